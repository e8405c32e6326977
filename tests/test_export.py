"""hyperscene export on the sample corpus's store (conftest's ``sample_store``, read-only; tests that
change a store copy it first). Expected outputs are computed here from the store's tables, read
directly; every output is loaded back with Hugging Face ``datasets``, offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ["HF_DATASETS_OFFLINE"] = "1"  # before datasets is imported: never the network

from conftest import reseal, units_with_alice_renamed  # noqa: E402
from hyperscene.pipelines.cli import main  # noqa: E402
from hyperscene.transforms.store.documents import gist_text  # noqa: E402
from hyperscene.transforms import export as ex  # noqa: E402
from hyperscene.transforms.errors import InvalidOption  # noqa: E402
from hyperscene.transforms.store.reader import StoreVersion  # noqa: E402


@pytest.fixture(scope="module")
def tables(sample_store):
    """The sample store's tables as Python rows, read directly (not through the code under test)."""
    return read_tables(sample_store)


def read_tables(path: Path) -> dict:
    store = StoreVersion(str(path))
    documents = sorted(store.read("documents").to_pylist(), key=lambda d: d["doc_id"])
    occurrences = defaultdict(list)
    for o in sorted(store.read("occurrences", ["doc_id", "position", "unit_id", "separator", "hyperword"]).to_pylist(),
                    key=lambda o: (o["doc_id"], o["position"])):
        occurrences[o["doc_id"]].append(o)
    units = {u["unit_id"]: u for u in store.read("units", ["unit_id", "text", "token_count"]).to_pylist()}
    canonical = dict(zip(*store.read("provenance", ["unit_id", "canonical_unit_id"]).to_pydict().values()))
    scenes = defaultdict(list)
    for s in store.read("scenes", ["scene_id", "doc_id", "level", "index", "first_position", "last_position", "code",
                                   "gist", "child_codes", "token_count"]).to_pylist():
        scenes[s["doc_id"]].append(s)
    for rows in scenes.values():
        rows.sort(key=lambda s: (s["level"], s["index"]))
    return {"store": store, "documents": documents, "occurrences": occurrences, "units": units, "canonical": canonical,
            "scenes": scenes, "manifest": store.manifest}


def expected_texts(tables, scope: str = "corpus", min_tokens: int = 0, order: list[str] | None = None,
                   raw: set[str] = frozenset()) -> dict[str, tuple[str, int, int]]:
    """doc_id -> (distilled text, units kept, tokens kept), the issue's rule written out plainly:
    documents walked in ``order`` (doc_id order by default); those in ``raw`` keep every unit, and
    what they hold counts as seen."""
    seen, out = set(), {}
    by_id = {d["doc_id"]: d for d in tables["documents"]}
    for doc in [by_id[d] for d in order] if order else tables["documents"]:
        if scope == "document":
            seen = set()
        text, kept, tokens = doc["prefix"], 0, 0
        for o in tables["occurrences"][doc["doc_id"]]:
            unit = tables["units"][o["unit_id"]]
            group = tables["canonical"].get(o["unit_id"], o["unit_id"])
            if doc["doc_id"] in raw or unit["token_count"] < min_tokens or group not in seen:
                text += unit["text"] + o["separator"]
                kept += 1
                tokens += unit["token_count"]
            if unit["token_count"] >= min_tokens:
                seen.add(group)
        out[doc["doc_id"]] = (text, kept, tokens)
    return out


def export(capsys, store, out, *args) -> tuple[dict, list[str]]:
    assert main(["export", str(store), "--out", str(out), *map(str, args)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return json.loads((Path(out) / "export.json").read_text()), lines


def load(out: Path, builder: str, ext: str, tmp_path: Path, split: str = "train"):
    import datasets

    datasets.disable_progress_bars()
    files = sorted(str(p) for p in (out / "data").glob(f"{split}-*.{ext}"))
    return datasets.load_dataset(builder, data_files={split: files}, cache_dir=str(tmp_path / "hf-cache"))[split]


# --- text ------------------------------------------------------------------------------------


def test_text_drops_every_repeat_after_its_canonical_occurrence(sample_store, tables, tmp_path, capsys):
    out = tmp_path / "text"
    summary, lines = export(capsys, sample_store, out, "--format", "text")
    rows = load(out, "parquet", "parquet", tmp_path)
    want = expected_texts(tables)
    assert rows["doc_id"] == [d["doc_id"] for d in tables["documents"]]  # one record per document, doc_id order
    for r in rows:
        text, kept, tokens = want[r["doc_id"]]
        assert (r["text"], r["units_out"], r["tokens_out"]) == (text, kept, tokens), r["doc_id"]
        assert r["units_in"] == len(tables["occurrences"][r["doc_id"]])

    # The sample has both kinds of repeat, and both are dropped.
    occ = [o for d in tables["documents"] for o in tables["occurrences"][d["doc_id"]]]
    assert any(n > 1 for n in Counter(o["unit_id"] for o in occ).values())
    members = {o["unit_id"] for o in occ} & set(tables["canonical"])
    assert members, "the sample store should have near-duplicate merges"
    assert expected_texts({**tables, "canonical": {}}) != want  # and they change what is dropped
    assert sum(rows["units_out"]) < len(occ) - sum(n - 1 for n in Counter(o["unit_id"] for o in occ).values())

    tokens_in = sum(tables["units"][o["unit_id"]]["token_count"] for o in occ)
    assert summary["counts"]["tokens_in"] == tokens_in == tables["manifest"]["counts"]["tokens"]
    assert summary["counts"]["tokens_out"] == sum(rows["tokens_out"]) < tokens_in
    assert lines[-1].startswith(f"tokens in {tokens_in:,}, tokens out {sum(rows['tokens_out']):,} (")
    assert summary["files"] == [{"path": "data/train-00000.parquet", "split": "train", "rows": len(rows)}]
    assert summary["version"] == 1 and summary["rows"] == {"train": len(rows), "test": 0}


def test_document_scope_and_short_units(sample_store, tables, tmp_path, capsys):
    _, _ = export(capsys, sample_store, tmp_path / "doc", "--dedup-scope", "document", "--file-format", "jsonl")
    rows = load(tmp_path / "doc", "json", "jsonl", tmp_path)
    want = expected_texts(tables, "document")
    assert {r["doc_id"]: r["text"] for r in rows} == {d: t for d, (t, _, _) in want.items()}
    corpus = expected_texts(tables)
    assert sum(k for _, k, _ in want.values()) > sum(k for _, k, _ in corpus.values())
    # great-expectations.jsonl:1 repeats Alice's licence text: gone corpus-wide, kept within its own document.
    assert corpus["great-expectations.jsonl:1"][0] == "" and want["great-expectations.jsonl:1"][0]

    _, _ = export(capsys, sample_store, tmp_path / "short", "--min-dedup-tokens", 6)
    rows = load(tmp_path / "short", "parquet", "parquet", tmp_path)
    want = expected_texts(tables, "corpus", 6)
    assert {r["doc_id"]: r["text"] for r in rows} == {d: t for d, (t, _, _) in want.items()}
    assert sum(rows["units_out"]) > sum(k for _, k, _ in corpus.values())


def test_shards_split_by_size_and_all_load(sample_store, tables, tmp_path, capsys):
    out = tmp_path / "sharded"
    summary, _ = export(capsys, sample_store, out, "--shard-size", "4KB", "--file-format", "jsonl")
    files = summary["files"]
    assert len(files) > 3 and [f["path"] for f in files] == [f"data/train-{i:05d}.jsonl" for i in range(len(files))]
    for f in files:
        data = (out / f["path"]).read_bytes()
        assert len(data.splitlines()) == f["rows"] >= 1
        assert len(data) <= 4000 or f["rows"] == 1  # only a record larger than a shard exceeds it
    rows = load(out, "json", "jsonl", tmp_path)
    assert rows["doc_id"] == [d["doc_id"] for d in tables["documents"]]

    out = tmp_path / "sharded-parquet"
    summary, _ = export(capsys, sample_store, out, "--shard-size", "4KB")
    assert len(summary["files"]) > 3
    assert load(out, "parquet", "parquet", tmp_path)["text"] == [t for _, (t, _, _) in sorted(expected_texts(tables).items())]


# --- hyperwords ------------------------------------------------------------------------------


def test_hyperwords_level_0_sequences_vocabulary_and_centroids(sample_store, tables, tmp_path, capsys):
    out = tmp_path / "hw0"
    summary, lines = export(capsys, sample_store, out, "--format", "hyperwords")
    rows = load(out, "parquet", "parquet", tmp_path)
    hyperwords = tables["store"].read("hyperwords", ["hyperword", "centroid", "representative_text"]).to_pylist()
    vocab = [json.loads(line) for line in (out / "vocab.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [v["token"] for v in vocab] == [f"<hw_0_{h['hyperword']}>" for h in hyperwords]
    assert [v["id"] for v in vocab] == [h["hyperword"] for h in hyperwords] == list(range(len(vocab)))
    assert [v["representative_text"] for v in vocab] == [h["representative_text"] for h in hyperwords]
    centroids = np.load(out / "centroids.npy")
    assert centroids.dtype == np.float32 and np.array_equal(centroids, np.array([h["centroid"] for h in hyperwords], np.float32))

    counts = Counter()
    for r in rows:
        codes = [o["hyperword"] for o in tables["occurrences"][r["doc_id"]]]
        assert r["ids"] == codes and r["text"] == " ".join(f"<hw_0_{c}>" for c in codes) and r["level"] == 0
        counts.update(codes)
    assert [v["count"] for v in vocab] == [counts[v["id"]] for v in vocab]
    units = sum(len(o) for o in tables["occurrences"].values())
    assert summary["counts"]["tokens_out"] == units and summary["counts"]["vocabulary"] == len(vocab)
    assert f"hyperword tokens out {units:,}" in lines[-1]
    # The folder itself loads too: the splits come from the shards' names, vocab.jsonl is not taken for data.
    import datasets

    whole = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert list(whole) == ["train"] and whole["train"]["ids"] == rows["ids"]


def test_hyperwords_of_a_scene_level_and_the_tokenizer_helper(sample_store, tables, tmp_path, capsys, model_folder):
    level = 3
    out = tmp_path / "hw3"
    export(capsys, sample_store, out, "--format", "hyperwords", "--level", level)
    rows = load(out, "parquet", "parquet", tmp_path)
    vocab = [json.loads(line) for line in (out / "vocab.jsonl").read_text(encoding="utf-8").splitlines()]
    codebook = tables["store"].read("codebooks").to_pylist()
    size = sum(1 for c in codebook if c["level"] == level)
    assert [v["token"] for v in vocab[:size]] == [f"<hw_{level}_{i}>" for i in range(size)]  # id = code at the level
    centroid_of = {(c["level"], c["code"]): c["centroid"] for c in codebook}
    assert np.array_equal(np.load(out / "centroids.npy"), np.array([centroid_of[(v["level"], v["code"])] for v in vocab], np.float32))

    id_of = {(v["level"], v["code"]): v["id"] for v in vocab}
    shallow = 0
    for r in rows:
        scenes = tables["scenes"][r["doc_id"]]
        depth = max(s["level"] for s in scenes)
        shallow += depth < level
        chosen = [s for s in scenes if s["level"] == min(level, depth)]
        assert r["text"].split() == [f"<hw_{s['level']}_{s['code']}>" for s in chosen]
        assert r["ids"] == [id_of[(s["level"], s["code"])] for s in chosen]
    assert shallow and len(vocab) > size  # shallower documents' roots joined the vocabulary after the level's codes
    assert all(v["level"] < level for v in vocab[size:])
    # Representative texts: the gists of the codebook's representative scenes.
    rep = next(c for c in codebook if c["level"] == level and c["representative_scene_id"])
    scene = next(s for s in tables["scenes"][rep["representative_scene_id"].split("#")[0]] if s["scene_id"] == rep["representative_scene_id"])
    texts = {o["position"]: tables["units"][o["unit_id"]]["text"] for o in tables["occurrences"][scene["doc_id"]]}
    assert vocab[rep["code"]]["representative_text"] == gist_text([texts[p] for p in scene["gist"]])

    # The helper reads this export; the exported texts then tokenise to exactly the new tokens.
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hyperscene.pipelines.hf_tokenizer import add_hyperword_tokens

    tokenizer = AutoTokenizer.from_pretrained(model_folder, local_files_only=True)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32))
    added = add_hyperword_tokens(tokenizer, model, str(out))
    assert len(added) == len(vocab) and model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    for r in rows:
        assert tokenizer(r["text"], add_special_tokens=False)["input_ids"] == [added[vocab[i]["token"]] for i in r["ids"]]


# --- pairs -----------------------------------------------------------------------------------


def scene_text(tables, scene) -> str:
    occ = tables["occurrences"][scene["doc_id"]][scene["first_position"] : scene["last_position"] + 1]
    return "".join(tables["units"][o["unit_id"]]["text"] + o["separator"] for o in occ[:-1]) + tables["units"][occ[-1]["unit_id"]]["text"]


def test_pairs_teach_expansion_and_compression_with_a_held_out_split(sample_store, tables, tmp_path, capsys):
    out = tmp_path / "pairs"
    summary, lines = export(capsys, sample_store, out, "--format", "pairs", "--level", 2, "--expand-from", "both")
    train, test = load(out, "json", "jsonl", tmp_path, "train"), load(out, "json", "jsonl", tmp_path, "test")
    assert len(test) and len(train)
    assert not set(train["doc_id"]) & set(test["doc_id"])  # held out by document
    assert set(test["doc_id"]) == ex.held_out_documents([d["doc_id"] for d in tables["documents"]], 0.05)

    by_scene = defaultdict(dict)
    for r in [*train, *test]:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        by_scene[r["scene_id"]][r["task"]] = r
    expected_scenes = []
    for doc in tables["documents"]:
        scenes = tables["scenes"][doc["doc_id"]]
        depth = max((s["level"] for s in scenes), default=0)
        expected_scenes += [s for s in scenes if s["level"] == min(2, depth)]
    assert sorted(by_scene) == sorted(s["scene_id"] for s in expected_scenes)
    for s in expected_scenes:
        text = scene_text(tables, s)
        codes = " ".join([f"<hw_{s['level']}_{s['code']}>", *(f"<hw_{s['level'] - 1}_{c}>" for c in s["child_codes"])])
        texts = {o["position"]: tables["units"][o["unit_id"]]["text"] for o in tables["occurrences"][s["doc_id"]]}
        gist = gist_text([texts[p] for p in s["gist"]])
        pairs = by_scene[s["scene_id"]]
        assert set(pairs) == {"expand_codes", "expand_gist", "compress"}
        assert pairs["expand_codes"]["messages"] == ex.chat(ex.EXPAND_CODES_PROMPT.format(codes=codes), text)
        assert pairs["expand_gist"]["messages"] == ex.chat(ex.EXPAND_GIST_PROMPT.format(gist=gist), text)
        assert pairs["compress"]["messages"] == ex.chat(ex.COMPRESS_PROMPT.format(level=s["level"], text=text), codes)
    assert summary["counts"]["scenes"] == len(expected_scenes) and summary["rows"]["test"] == len(test)
    assert lines[0].endswith(f"{len(train):,} train, {len(test):,} test records in 2 files")


def test_pairs_options(sample_store, tables, tmp_path, capsys):
    summary, _ = export(capsys, sample_store, tmp_path / "compress", "--format", "pairs", "--tasks", "compress",
                        "--test-fraction", 0, "--max-scene-tokens", 150, "--file-format", "parquet")
    rows = load(tmp_path / "compress", "parquet", "parquet", tmp_path)
    level1 = [s for scenes in tables["scenes"].values() for s in scenes if s["level"] == 1]
    short = [s for s in level1 if s["token_count"] <= 150]
    assert 0 < len(short) < len(level1)
    assert set(rows["task"]) == {"compress"} and sorted(rows["scene_id"]) == sorted(s["scene_id"] for s in short)
    assert summary["counts"]["skipped_scenes"] == len(level1) - len(short) and summary["rows"]["test"] == 0


# --- orders, mix and transitions -------------------------------------------------------------

ORIGINAL, COPY = "great-expectations.jsonl:10", "great-expectations.jsonl:10-copy"


@pytest.fixture(scope="module")
def store_with_a_copy(sample_store, tmp_path_factory) -> Path:
    """The sample store with one more document: great-expectations.jsonl:10 again under another id
    (sorting right after it), so that every unit, hyperword and scene of the copy is a known repeat."""
    store = tmp_path_factory.mktemp("copy") / "store"
    shutil.copytree(sample_store, store)
    for table in ("documents", "occurrences", "scenes"):
        path = store / "v000001" / table / "part-00000.parquet"
        rows = pq.read_table(path)
        copies = [r for r in rows.to_pylist() if r["doc_id"] == ORIGINAL]
        for r in copies:
            r["doc_id"] = COPY
            for key in ("scene_id", "parent_scene_id"):
                if r.get(key):
                    r[key] = r[key].replace(f"{ORIGINAL}#", f"{COPY}#")
        pq.write_table(pa.concat_tables([rows, pa.Table.from_pylist(copies, schema=rows.schema)]), path)
        reseal(store / "v000001", f"{table}/part-00000.parquet")
    return store


def data_files_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "export.json"}


def all_records(out: Path, builder: str, ext: str, tmp_path: Path) -> list[dict]:
    """Every record, train then test, each split in file order."""
    return [r for split in ex.SPLITS if list((out / "data").glob(f"{split}-*.{ext}"))
            for r in load(out, builder, ext, tmp_path, split)]


def original_text(tables, doc_id: str) -> str:
    doc = next(d for d in tables["documents"] if d["doc_id"] == doc_id)
    return doc["prefix"] + "".join(tables["units"][o["unit_id"]]["text"] + o["separator"] for o in tables["occurrences"][doc_id])


def scenes_at(tables, doc_id: str, level: int) -> list[dict]:
    scenes = tables["scenes"][doc_id]
    depth = max((s["level"] for s in scenes), default=0)
    return [s for s in scenes if s["level"] == min(level, depth)]


def expected_novelty_order(tables) -> tuple[list[str], dict[str, float]]:
    """Documents by the share of their occurrences whose hyperword no earlier document has, highest
    first; and that share."""
    seen, novelty = set(), {}
    for doc in tables["documents"]:
        occ = tables["occurrences"][doc["doc_id"]]
        earlier = set(seen)
        novelty[doc["doc_id"]] = sum(o["hyperword"] not in earlier for o in occ) / len(occ) if occ else 0.0
        seen |= {o["hyperword"] for o in occ}
    return sorted(novelty, key=lambda d: (-novelty[d], d)), novelty


def test_document_order_is_the_default_and_exports_are_deterministic(sample_store, tmp_path, capsys):
    default, _ = export(capsys, sample_store, tmp_path / "default")
    document, _ = export(capsys, sample_store, tmp_path / "document", "--order", "document")
    assert data_files_of(tmp_path / "default") == data_files_of(tmp_path / "document")
    assert default["options"] == document["options"] == {"order": "document", "mix": 0.0, "dedup_scope": "corpus",
                                                          "min_dedup_tokens": 0}
    assert set(load(tmp_path / "default", "parquet", "parquet", tmp_path)["kind"]) == {"distilled"}
    for i, args in enumerate([["--format", "hyperwords", "--order", "level"],
                              ["--format", "text", "--order", "novelty", "--mix", "0.3", "--test-fraction", "0.2"],
                              ["--format", "pairs", "--order", "novelty", "--tasks", "expand,compress,transitions"]]):
        first, _ = export(capsys, sample_store, tmp_path / f"{i}-a", *args)
        second, _ = export(capsys, sample_store, tmp_path / f"{i}-b", *args)
        assert data_files_of(tmp_path / f"{i}-a") == data_files_of(tmp_path / f"{i}-b"), args
        assert first["options"]["order"] == args[3] and first["counts"] == second["counts"]
    assert first["options"]["mix"] == 0.0 and first["options"]["tasks"] == ["expand", "compress", "transitions"]


def test_level_order_writes_every_coarser_level_before_a_finer_one(sample_store, tables, tmp_path, capsys):
    doc_ids = [d["doc_id"] for d in tables["documents"]]
    held = ex.held_out_documents(doc_ids, 0.05)
    deepest = max(s["level"] for scenes in tables["scenes"].values() for s in scenes)
    out = tmp_path / "pairs"
    summary, lines = export(capsys, sample_store, out, "--format", "pairs", "--order", "level", "--tasks", "compress",
                            "--max-scene-tokens", 0)
    records = all_records(out, "json", "jsonl", tmp_path)
    # Level by level from the roots down, documents in doc_id order within a level; every scene once.
    want = [s for level in range(deepest, 0, -1) for d in doc_ids for s in tables["scenes"][d] if s["level"] == level]
    assert [r["scene_id"] for r in records] == ([s["scene_id"] for s in want if s["doc_id"] not in held]
                                                + [s["scene_id"] for s in want if s["doc_id"] in held])
    assert {r["doc_id"] for r in records if r["doc_id"] in held} == held  # the split of the document order
    assert summary["counts"]["scenes"] == len(want) and summary["options"]["order"] == "level"
    assert lines[0].startswith("exported pairs at levels down to 1 in level order from version 1")

    out = tmp_path / "hyperwords"
    export(capsys, sample_store, out, "--format", "hyperwords", "--order", "level", "--level", 2)
    records = load(out, "parquet", "parquet", tmp_path)
    vocab = [json.loads(line) for line in (out / "vocab.jsonl").read_text(encoding="utf-8").splitlines()]
    # One record per document and level, the deepest first; at level 2 the shallower documents' roots stand in.
    want = [(d, level, [s for s in tables["scenes"][d] if s["level"] == level] if level > 2 else scenes_at(tables, d, 2))
            for level in range(deepest, 1, -1) for d in doc_ids
            if level == 2 or any(s["level"] == level for s in tables["scenes"][d])]
    assert [(r["doc_id"], r["level"]) for r in records] == [(d, level) for d, level, _ in want]
    assert any(s["level"] < 2 for _, _, scenes in want for s in scenes)
    for r, (_, _, scenes) in zip(records, want):
        assert r["text"].split() == [f"<hw_{s['level']}_{s['code']}>" for s in scenes] == [vocab[i]["token"] for i in r["ids"]]
        assert r["kind"] == "hyperwords"
    # The vocabulary: level 2's codes (id = code), then every other (level, code) in that order, coarser codebooks whole.
    codebook = tables["store"].read("codebooks", ["level", "code"]).to_pylist()
    size = sum(c["level"] == 2 for c in codebook)
    assert [(v["level"], v["code"]) for v in vocab[:size]] == [(2, c) for c in range(size)]
    rest = [(v["level"], v["code"]) for v in vocab[size:]]
    assert rest == sorted(rest) and {(c["level"], c["code"]) for c in codebook if c["level"] > 2} <= set(rest)
    assert len(np.load(out / "centroids.npy")) == len(vocab)


def test_novelty_order_puts_new_before_repeats(store_with_a_copy, tmp_path, capsys):
    tables = read_tables(store_with_a_copy)
    doc_ids = [d["doc_id"] for d in tables["documents"]]
    order, novelty = expected_novelty_order(tables)
    # The copy brings nothing new: among the documents of novelty 0, after its original.
    assert novelty[COPY] == 0 < novelty[ORIGINAL] and order.index(COPY) > order.index(ORIGINAL)
    assert order != doc_ids and order[0] == "alice-in-wonderland.txt"  # the first document: all new

    out = tmp_path / "text"
    export(capsys, store_with_a_copy, out, "--order", "novelty")
    rows = load(out, "parquet", "parquet", tmp_path)
    assert rows["doc_id"] == order
    # Repeats are dropped after their first occurrence in the order written.
    want = expected_texts(tables, order=order)
    assert {r["doc_id"]: r["text"] for r in rows} == {d: t for d, (t, _, _) in want.items()}
    assert want[COPY][1] == 0 and expected_texts(tables)[COPY][1] == 0
    export(capsys, store_with_a_copy, tmp_path / "hw", "--format", "hyperwords", "--order", "novelty")
    assert load(tmp_path / "hw", "parquet", "parquet", tmp_path)["doc_id"] == order

    out = tmp_path / "pairs"
    summary, _ = export(capsys, store_with_a_copy, out, "--format", "pairs", "--order", "novelty", "--tasks", "compress",
                        "--max-scene-tokens", 0)
    records = all_records(out, "json", "jsonl", tmp_path)
    held = ex.held_out_documents(doc_ids, 0.05)
    walk, seen, new, repeats = [s for d in doc_ids for s in scenes_at(tables, d, 1)], set(), [], []
    for s in walk:
        key = (s["level"], s["code"], tuple(s["child_codes"]))
        (repeats if key in seen else new).append(s["scene_id"])
        seen.add(key)
    copied = [s["scene_id"] for s in scenes_at(tables, COPY, 1)]
    assert copied and set(copied) <= set(repeats)
    split_of = {s["scene_id"]: s["doc_id"] in held for s in walk}
    assert [r["scene_id"] for r in records] == [i for test in (False, True) for i in [*new, *repeats] if split_of[i] == test]
    assert {r["doc_id"] for r in records if r["doc_id"] in held} == held and summary["counts"]["scenes"] == len(walk)


def test_mix_writes_a_share_of_documents_as_their_exact_text(sample_store, tables, tmp_path, capsys):
    doc_ids = [d["doc_id"] for d in tables["documents"]]
    raw = ex.mixed_documents(doc_ids, 0.3)
    assert 0 < len(raw) < len(doc_ids) and "great-expectations.jsonl:1" in raw
    out = tmp_path / "text"
    summary, lines = export(capsys, sample_store, out, "--mix", 0.3)
    rows = load(out, "parquet", "parquet", tmp_path)
    assert {r["doc_id"] for r in rows if r["kind"] == "raw"} == raw
    assert {r["kind"] for r in rows if r["doc_id"] not in raw} == {"distilled"}
    sha = {d["doc_id"]: d["sha256"] for d in tables["documents"]}
    for r in rows:
        if r["kind"] == "raw":  # the original, byte for byte
            assert r["text"] == original_text(tables, r["doc_id"])
            assert hashlib.sha256(r["text"].encode("utf-8")).hexdigest() == sha[r["doc_id"]]
            assert (r["units_out"], r["tokens_out"]) == (r["units_in"], r["tokens_in"])
    # Raw documents drop nothing (great-expectations.jsonl:1 repeats Alice's licence) but count as seen.
    want = expected_texts(tables, raw=raw)
    assert {r["doc_id"]: r["text"] for r in rows} == {d: t for d, (t, _, _) in want.items()}
    assert want["great-expectations.jsonl:1"][0] and not expected_texts(tables)["great-expectations.jsonl:1"][0]
    raw_tokens = sum(r["tokens_in"] for r in rows if r["kind"] == "raw")
    assert (summary["counts"]["raw_documents"], summary["counts"]["raw_tokens"]) == (len(raw), raw_tokens)
    assert summary["options"]["mix"] == 0.3 and f"mix: {len(raw)} documents ({raw_tokens:,} tokens)" in lines[-1]

    out = tmp_path / "hyperwords"
    summary, _ = export(capsys, sample_store, out, "--format", "hyperwords", "--mix", 0.3, "--order", "novelty",
                        "--test-fraction", 0.2)
    records = all_records(out, "parquet", "parquet", tmp_path)
    assert {r["doc_id"] for r in records if r["kind"] == "raw"} == raw and len(records) == len(doc_ids)
    for r in records:
        if r["kind"] == "raw":
            assert (r["text"], r["ids"], r["level"]) == (original_text(tables, r["doc_id"]), [], None)
        else:
            assert r["kind"] == "hyperwords" and r["ids"] == [o["hyperword"] for o in tables["occurrences"][r["doc_id"]]]
    test = set(load(out, "parquet", "parquet", tmp_path, "test")["doc_id"])
    assert test == ex.held_out_documents(doc_ids, 0.2) and summary["counts"]["raw_documents"] == len(raw)


def test_transitions_pair_each_scene_with_the_next_ones_codes_and_gist(sample_store, tables, tmp_path, capsys):
    out = tmp_path / "pairs"
    summary, lines = export(capsys, sample_store, out, "--format", "pairs", "--tasks", "transitions", "--test-fraction", 0,
                            "--max-scene-tokens", 150)
    records = load(out, "json", "jsonl", tmp_path)
    assert set(records["task"]) == {"transition_next", "transition_previous"}
    want = []
    for doc in tables["documents"]:
        texts = {o["position"]: tables["units"][o["unit_id"]]["text"] for o in tables["occurrences"][doc["doc_id"]]}
        scenes = scenes_at(tables, doc["doc_id"], 1)
        for scene, following in zip(scenes, scenes[1:]):
            if scene["token_count"] > 150:
                continue  # its text is too long; the next scene's codes and gist are not
            text = scene_text(tables, scene)
            codes = " ".join([f"<hw_1_{following['code']}>", *(f"<hw_0_{c}>" for c in following["child_codes"])])
            target = codes + "\n" + gist_text([texts[p] for p in following["gist"]])
            want += [("transition_next", scene["scene_id"], ex.chat(ex.TRANSITION_NEXT_PROMPT.format(text=text), target)),
                     ("transition_previous", scene["scene_id"],
                      ex.chat(ex.TRANSITION_PREVIOUS_PROMPT.format(codes_and_gist=target), text))]
    assert [(r["task"], r["scene_id"], r["messages"]) for r in records] == want
    assert summary["counts"]["transitions"] == len(want) // 2 and f"{len(want) // 2:,} transitions" in lines[-1]
    assert summary["counts"]["skipped_scenes"] > 0


# --- versions, deleted documents, output folder, errors --------------------------------------


def copy_store(sample_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    return store


def test_version_defaults_to_the_latest(sample_store, tables, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    shutil.copytree(store / "v000001", store / "v000002")
    manifest = json.loads((store / "v000002" / "manifest.json").read_text())
    (store / "v000002" / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    documents = pq.read_table(store / "v000002" / "documents" / "part-00000.parquet")
    keep = [d != "sign-of-the-four.md" for d in documents["doc_id"].to_pylist()]
    pq.write_table(documents.filter(pa.array(keep)), store / "v000002" / "documents" / "part-00000.parquet")
    reseal(store / "v000002", "documents/part-00000.parquet")  # a version the manifest vouches for

    latest, _ = export(capsys, store, tmp_path / "latest", "--format", "hyperwords")
    first, _ = export(capsys, store, tmp_path / "first", "--format", "hyperwords", "--version", 1)
    assert (latest["version"], latest["documents"]) == (2, len(tables["documents"]) - 1)
    assert (first["version"], first["documents"]) == (1, len(tables["documents"]))
    rows = load(tmp_path / "latest", "parquet", "parquet", tmp_path)
    assert "sign-of-the-four.md" not in rows["doc_id"]
    # The sequences of the other documents are untouched by the rows of the one no longer listed.
    assert all(r["ids"] == [o["hyperword"] for o in tables["occurrences"][r["doc_id"]]] for r in rows)
    assert main(["export", str(store), "--out", str(tmp_path / "none"), "--version", "3"]) == 2
    assert "has no version 3" in capsys.readouterr().err


def test_deleted_documents_are_skipped(sample_store, tables, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    path = store / "v000001" / "documents" / "part-00000.parquet"
    documents = pq.read_table(path)
    deleted = pa.array([d == "alice-in-wonderland.txt" for d in documents["doc_id"].to_pylist()])
    if "deleted" in documents.column_names:  # store format 3
        documents = documents.set_column(documents.schema.get_field_index("deleted"), "deleted", deleted)
    else:
        documents = documents.append_column("deleted", deleted)
    pq.write_table(documents, path)
    reseal(store / "v000001", "documents/part-00000.parquet")
    summary, _ = export(capsys, store, tmp_path / "out")
    rows = load(tmp_path / "out", "parquet", "parquet", tmp_path)
    assert "alice-in-wonderland.txt" not in rows["doc_id"] and summary["documents"] == len(tables["documents"]) - 1
    # Alice no longer comes first, so the licence text she shared with great-expectations.jsonl:1 stays there.
    assert rows[rows["doc_id"].index("great-expectations.jsonl:1")]["units_out"] > 0


def test_output_folder_rules(sample_store, tmp_path, capsys):
    out = tmp_path / "out"
    export(capsys, sample_store, out, "--format", "hyperwords", "--shard-size", "2KB")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(before) > 4

    assert main(["export", str(sample_store), "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err and sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == before

    # --overwrite replaces the previous export whole: no shard or vocabulary of it is left.
    export(capsys, sample_store, out, "--overwrite")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["data/train-00000.parquet", "export.json"]

    (out / "notes.txt").write_text("mine")
    assert main(["export", str(sample_store), "--out", str(out), "--overwrite"]) == 2
    assert "also holds 'notes.txt'" in capsys.readouterr().err and (out / "export.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--format", "hyperwords", "--level", "99"], "--level 99 is out of range: this store has levels 0 to"),
    (["--format", "pairs", "--level", "0"], "--format hyperwords --level 0"),
    (["--level", "1"], "--level applies to --format hyperwords and pairs"),
    (["--shard-size", "lots"], "--shard-size takes a size"),
    (["--shard-size", "10"], "at least 1024 bytes"),
    (["--test-fraction", "1"], "--test-fraction must be at least 0 and below 1"),
    (["--format", "pairs", "--tasks", "expand,summarise"], "--tasks takes a comma-separated list"),
    (["--format", "pairs", "--max-scene-tokens", "-1"], "--max-scene-tokens must be 0"),
    (["--min-dedup-tokens", "-2"], "--min-dedup-tokens must be 0 or more"),
    (["--order", "level"], "[E264] --order level applies to --format hyperwords and pairs"),
    (["--format", "hyperwords", "--mix", "1"], "[E265] --mix must be at least 0 and below 1, not 1.0"),
    (["--mix", "-0.1"], "[E265] --mix must be at least 0 and below 1"),
    (["--format", "pairs", "--mix", "0.2"], "[E266] --mix applies to --format text and hyperwords, not pairs"),
    (["--format", "pairs", "--tasks", "transitions,next"], "--tasks takes a comma-separated list of expand, compress, transitions"),
])
def test_option_errors_write_nothing(sample_store, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["export", str(sample_store), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*"))


def test_a_damaged_document_fails_the_export(sample_store, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    units_file = store / "v000001" / "units" / "part-00000.parquet"
    pq.write_table(units_with_alice_renamed(units_file), units_file)
    out = tmp_path / "out"
    assert main(["export", str(store), "--out", str(out)]) == 1
    assert "[E410] v000001/units/part-00000.parquet" in capsys.readouterr().err  # the file no longer matches its manifest
    reseal(store / "v000001", "units/part-00000.parquet")  # rewritten with its manifest: the documents' sha256 catch it
    assert main(["export", str(store), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 document(s) did not match their stored sha256" in err and "'alice-in-wonderland.txt'" in err
    assert not (out / "export.json").exists()  # an export without its summary is an unfinished one


# --- pure logic ------------------------------------------------------------------------------


def test_deduper_and_distil():
    canonical = {"b2": "b"}  # b2 is a near-duplicate of b
    d = ex.Deduper(canonical)
    assert d.keep(["a", "b", "a", "b2"]) == [True, True, False, False]
    assert d.keep(["b2", "c"]) == [False, True]  # corpus scope: b's group was seen in the first document
    d = ex.Deduper(canonical, "document")
    assert d.keep(["b2", "a", "b"]) == [True, True, False]  # the first of a group is kept, member or not
    assert d.keep(["b", "a"]) == [True, True]
    d = ex.Deduper({}, min_tokens=3)
    assert d.keep(["x", "x", "y", "y"], [2, 2, 3, 3]) == [True, True, True, False]
    # A dropped unit takes the whitespace after it along; the prefix stays.
    assert ex.distil("\n", ["One. ", "Two.\n\n", "One. ", "Three."], [True, True, False, True]) == "\nOne. Two.\n\nThree."
    with pytest.raises(InvalidOption):
        ex.Deduper({}, "shelf")


def test_split_and_sizes():
    ids = [f"doc-{i}" for i in range(2000)]
    held = ex.held_out_documents(ids, 0.1)
    assert 150 < len(held) < 250 and held == ex.held_out_documents(list(reversed(ids)), 0.1)
    # Adding or removing documents moves no other document between splits.
    assert ex.held_out_documents(ids + ["new"], 0.1) - {"new"} == held
    assert ex.held_out_documents(ids[:1000], 0.1) == held & set(ids[:1000])
    assert len(ex.held_out_documents(ids[:2], 0.01)) == 1 and ex.held_out_documents(ids[:1], 0.01) == set()
    assert ex.held_out_documents(ids, 0) == set()
    assert [ex.parse_size(s) for s in ("256MB", "1.5GiB", "500kb", "2048")] == [256_000_000, int(1.5 * 2**30), 500_000, 2048]
    assert ex.parse_token(ex.hw_token(3, 17)) == (3, 17)


def test_orders_mix_and_transitions_logic():
    with pytest.raises(InvalidOption, match=r"\[E267\] --order must be one of document, level, novelty, not 'sideways'"):
        ex.check_order("sideways", "pairs")
    with pytest.raises(InvalidOption, match=r"\[E264\]"):
        ex.check_order("level", "text")
    ex.check_order("novelty", "text")
    with pytest.raises(InvalidOption, match=r"\[E266\]"):
        ex.check_mix(0.5, "pairs")
    ex.check_mix(0, "pairs")
    assert ex.export_levels(5, 1, "level") == [5, 4, 3, 2, 1] and ex.export_levels(5, 1, "novelty") == [1]
    assert ex.export_levels(0, 0, "level") == [0]

    # A document of levels 1 and 2: each pass takes its own level; the finest pass takes the root when deeper.
    scenes = [{"level": 1, "index": i, "code": c, "child_codes": [7, 8]} for i, c in enumerate((3, 4, 3))]
    scenes.append({"level": 2, "index": 0, "code": 9, "child_codes": [3, 4, 3]})
    assert ex.pass_scenes(scenes, 3, 1) == [] and ex.pass_scenes(scenes, 2, 1) == scenes[3:]
    assert ex.pass_scenes(scenes, 1, 1) == scenes[:3] and ex.pass_scenes(scenes, 3, 3) == scenes[3:]
    assert ex.with_next(scenes[:3]) == [(scenes[0], scenes[1]), (scenes[1], scenes[2]), (scenes[2], None)]
    assert ex.first_seen(ex.scene_key(s) for s in scenes) == [True, True, False, True]

    # Novelty: document 0 brings keys 5 and 6, document 1 key 7 (5 is a repeat), 2 and 3 nothing; 4 is empty.
    novelty = ex.document_novelty([0, 0, 0, 1, 1, 2, 2, -1, 3], [5, 5, 6, 5, 7, 7, 7, 9, 5], 5)
    assert novelty.tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert ex.novelty_order(["a", "b", "c", "d", "e"], novelty) == [0, 1, 2, 3, 4]
    assert ex.novelty_order(["e", "d", "c", "b", "a"], [0.5, 0.5, 1 / 3, 2 / 6, 0]) == [1, 0, 3, 2, 4]  # ties by doc_id
    assert ex.document_novelty([], [], 2).tolist() == [0.0, 0.0]

    # The mix: about its share, each document by its own id, independent of the held-out split.
    ids = [f"doc-{i}" for i in range(2000)]
    mixed = ex.mixed_documents(ids, 0.25)
    assert 420 < len(mixed) < 580 and ex.mixed_documents(ids[:1000], 0.25) == mixed & set(ids[:1000])
    assert 50 < len(mixed & ex.held_out_documents(ids, 0.25)) < 200  # about 0.25 * 0.25 * 2000 = 125
    assert ex.mixed_documents(ids, 0) == set() and ex.doc_fraction("a") == ex.doc_fraction("a", ex.SPLIT_PERSON)
    with pytest.raises(InvalidOption, match=r"\[E265\]"):
        ex.mixed_documents(ids, 1.0)

    assert ex.transition_messages("One. Two.", "<hw_1_3> <hw_0_7>", "Two.") == [
        ("transition_next", ex.chat(ex.TRANSITION_NEXT_PROMPT.format(text="One. Two."), "<hw_1_3> <hw_0_7>\nTwo.")),
        ("transition_previous", ex.chat(ex.TRANSITION_PREVIOUS_PROMPT.format(codes_and_gist="<hw_1_3> <hw_0_7>\nTwo."),
                                        "One. Two."))]
    assert ex.transition_messages("x", "<hw_1_3>", "")[0][1][1]["content"] == "<hw_1_3>"
    assert ex.parse_tasks("transitions, expand") == ("transitions", "expand")

    # With --order level the vocabulary holds coarser codebooks: after the level's codes, in (level, code) order.
    vocab = ex.Vocabulary.build(0, [{"code": 0}, {"code": 1}], [(2, 0), (1, 1), (1, 0)])
    assert [r["token"] for r in vocab.rows] == ["<hw_0_0>", "<hw_0_1>", "<hw_1_0>", "<hw_1_1>", "<hw_2_0>"]
    assert vocab.encode([(2, 0), (0, 1)]) == [4, 1]


def test_tokens_counted_with_a_named_tokenizer(sample_store, tables, tmp_path, capsys, model_folder):
    # The store's own model folder as --tokenizer: the same tokenizer, so the same figures, recounted.
    summary, lines = export(capsys, sample_store, tmp_path / "out", "--tokenizer", model_folder)
    assert summary["counts"]["tokens_in"] == tables["manifest"]["counts"]["tokens"]
    assert summary["counts"]["tokens_out"] == sum(t for _, _, t in expected_texts(tables).values())
    assert f"counted with tokenizer {model_folder}" in lines[-1]
    assert main(["export", str(sample_store), "--out", str(tmp_path / "none"), "--tokenizer", str(tmp_path / "nothing")]) == 2
    assert "is not a local folder or in the Hugging Face cache" in capsys.readouterr().err
