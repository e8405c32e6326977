"""Decompress by scene level and inspect per level, end to end on the sample corpus's store.

The store is conftest's ``sample_store`` (the real sample corpus, compressed once per session);
a second, tiny store holds documents without units. Paths come from the fixtures, never from the
working directory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import SAMPLE_CORPUS, reseal, units_with_alice_renamed
from hyperscene.pipelines.cli import main
from hyperscene.transforms.store.documents import gist_text
from hyperscene.transforms.store.reader import StoreVersion

SCENE_COLUMNS = ["scene_id", "doc_id", "level", "index", "parent_scene_id", "first_position", "last_position",
                 "token_count", "gist"]


@pytest.fixture(scope="module")
def tables(sample_store):
    """The sample store's tables as Python rows, read directly (not through the code under test)."""
    store = StoreVersion(str(sample_store))
    scenes = store.read("scenes", SCENE_COLUMNS).to_pylist()
    documents = {d["doc_id"]: d for d in store.read("documents").to_pylist()}
    occurrences = store.read("occurrences", ["doc_id", "position", "unit_id", "separator"]).to_pylist()
    units = dict(zip(*store.read("units", ["unit_id", "text"]).to_pydict().values()))
    unit_text = {(o["doc_id"], o["position"]): units[o["unit_id"]] for o in occurrences}
    piece = {(o["doc_id"], o["position"]): units[o["unit_id"]] + o["separator"] for o in occurrences}
    depth = defaultdict(int)
    for s in scenes:
        depth[s["doc_id"]] = max(depth[s["doc_id"]], s["level"])
    return {"store": store, "scenes": scenes, "by_id": {s["scene_id"]: s for s in scenes}, "documents": documents,
            "unit_text": unit_text, "piece": piece, "depth": dict(depth)}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _scenes_jsonl(store, tmp_path: Path, *args: str) -> list[dict]:
    """The scenes that ``decompress STORE ARGS --format jsonl`` writes to a new file, as dicts."""
    folder = tmp_path / "scenes-out"
    folder.mkdir(exist_ok=True)
    out = folder / f"{len(list(folder.iterdir()))}.jsonl"
    assert main(["decompress", str(store), *args, "--format", "jsonl", "--out", str(out)]) == 0
    return _jsonl(out)


def _original_bytes(doc_id: str) -> bytes | None:
    """The sample corpus's own bytes for its text files (JSONL records are checked by sha256)."""
    if (SAMPLE_CORPUS / doc_id).is_file():
        return (SAMPLE_CORPUS / doc_id).read_bytes()
    if (SAMPLE_CORPUS / (doc_id + ".gz")).is_file():
        return gzip.decompress((SAMPLE_CORPUS / (doc_id + ".gz")).read_bytes())
    return None


def test_level_texts_rebuild_every_document_byte_for_byte_at_every_level(sample_store, tables, tmp_path):
    documents, depth = tables["documents"], tables["depth"]
    deepest = max(depth.values())
    assert deepest >= 3 and min(depth.values()) == 1  # the sample has deep documents and one-level ones
    for level in range(1, deepest + 1):
        records = _scenes_jsonl(sample_store, tmp_path, "--level", str(level))
        rebuilt, via_prefix_field, spans = defaultdict(str), defaultdict(str), defaultdict(list)
        for r in records:
            # A document with fewer levels contributes its root.
            assert r["level"] == min(level, depth[r["doc_id"]]) and r["depth"] == depth[r["doc_id"]]
            assert r["prefix"] == (documents[r["doc_id"]]["prefix"] if r["first_position"] == 0 else "")
            rebuilt[r["doc_id"]] += r["text"]
            via_prefix_field[r["doc_id"]] += r["prefix"] + r["text"]
            spans[r["doc_id"]].append((r["first_position"], r["last_position"]))
        assert set(rebuilt) == {d for d, row in documents.items() if row["unit_count"]}
        for doc_id, text in rebuilt.items():
            doc = documents[doc_id]
            whole = (doc["prefix"] + text).encode("utf-8")
            assert hashlib.sha256(whole).hexdigest() == doc["sha256"], (level, doc_id)
            assert via_prefix_field[doc_id].encode("utf-8") == whole
            original = _original_bytes(doc_id)
            assert original is None or whole == original, (level, doc_id)
            # The spans tile the document's units in order.
            firsts, lasts = zip(*spans[doc_id])
            assert firsts[0] == 0 and lasts[-1] == doc["unit_count"] - 1
            assert all(b == a + 1 for a, b in zip(lasts, firsts[1:]))
        assert len(records) == sum(1 for s in tables["scenes"] if s["level"] == min(level, depth[s["doc_id"]]))


def test_text_format_is_a_header_per_scene_then_its_exact_text(sample_store, tables, tmp_path, capsys):
    doc_id = "sign-of-the-four.md"
    records = _scenes_jsonl(sample_store, tmp_path, "--level", "2", "--doc", doc_id)
    assert main(["decompress", str(sample_store), "--level", "2", "--doc", doc_id]) == 0
    printed = capsys.readouterr().out
    expected = ""
    for r in records:
        expected += (f"=== {r['scene_id']} | level 2 | units {r['first_position']}-{r['last_position']} | "
                     f"{r['token_count']:,} tokens\n")
        expected += r["text"] + ("" if r["text"].endswith("\n") else "\n")
    assert printed == expected
    # The same to a file.
    out = tmp_path / "level2.txt"
    assert main(["decompress", str(sample_store), "--level", "2", "--doc", doc_id, "--out", str(out)]) == 0
    assert out.read_bytes().decode("utf-8") == expected


def test_gists_are_the_scenes_own_central_units(sample_store, tables, tmp_path, capsys):
    for level in (1, 2):
        records = _scenes_jsonl(sample_store, tmp_path, "--level", str(level), "--gist")
        assert records and all("text" not in r for r in records)
        for r in records:
            scene = tables["by_id"][r["scene_id"]]
            assert r["gist_positions"] == scene["gist"] and scene["gist"] == sorted(scene["gist"])
            assert all(scene["first_position"] <= p <= scene["last_position"] for p in r["gist_positions"])
            texts = [tables["unit_text"][(r["doc_id"], p)] for p in r["gist_positions"]]
            assert r["gist"] == gist_text(texts) and r["gist"] == " ".join(" ".join(t.split()) for t in texts)
            assert 0 < len(r["gist"]) and "\n" not in r["gist"]

    doc_id = "alice-in-wonderland.txt"
    assert main(["decompress", str(sample_store), "--level", "1", "--gist", "--doc", doc_id]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[-1] == ""
    level1 = [s for s in tables["scenes"] if s["doc_id"] == doc_id and s["level"] == 1]
    assert len(blocks) - 1 == len(level1)
    for block, scene in zip(blocks, level1):
        header, gist = block.split("\n")
        assert header.startswith(f"=== {scene['scene_id']} | level 1 | units {scene['first_position']}-{scene['last_position']} |")
        assert header.endswith("gist of units " + ", ".join(map(str, scene["gist"])))
        assert gist == gist_text([tables["unit_text"][(doc_id, p)] for p in scene["gist"]])


def test_shallow_document_gives_its_root_at_any_level(sample_store, tables, tmp_path):
    doc_id = "great-expectations.jsonl:1"  # five units: one scene, which is the root
    assert tables["depth"][doc_id] == 1
    deepest = max(tables["depth"].values())
    (record,) = _scenes_jsonl(sample_store, tmp_path, "--level", str(deepest), "--doc", doc_id)
    assert record["scene_id"] == f"{doc_id}#1.0" and record["parent_scene_id"] is None and record["level"] == 1
    doc = tables["documents"][doc_id]
    assert hashlib.sha256((record["prefix"] + record["text"]).encode()).hexdigest() == doc["sha256"]


def test_scene_option_gives_one_subtree(sample_store, tables, tmp_path):
    doc_id = "alice-in-wonderland.txt"
    scene = next(s for s in tables["scenes"] if s["doc_id"] == doc_id and s["level"] == 3 and s["index"] == 1)
    sid = scene["scene_id"]
    span = range(scene["first_position"], scene["last_position"] + 1)
    exact = "".join(tables["piece"][(doc_id, p)] for p in span)

    (whole,) = _scenes_jsonl(sample_store, tmp_path, "--scene", sid)
    assert whole["scene_id"] == sid and whole["text"] == exact

    inside = [s for s in tables["scenes"] if s["doc_id"] == doc_id and s["level"] == 1
              and scene["first_position"] <= s["first_position"] <= scene["last_position"]]
    level1 = _scenes_jsonl(sample_store, tmp_path, "--scene", sid, "--level", "1")
    assert [r["scene_id"] for r in level1] == [s["scene_id"] for s in inside] and len(level1) >= 2
    assert "".join(r["text"] for r in level1) == exact

    children = _scenes_jsonl(sample_store, tmp_path, "--scene", sid, "--level", "2")
    assert {r["parent_scene_id"] for r in children} == {sid}
    assert "".join(r["text"] for r in children) == exact

    (own,) = _scenes_jsonl(sample_store, tmp_path, "--scene", sid, "--gist")
    assert own["gist_positions"] == scene["gist"]
    gists = _scenes_jsonl(sample_store, tmp_path, "--scene", sid, "--gist", "--level", "1")
    assert [r["gist_positions"] for r in gists] == [s["gist"] for s in inside]

    # Several scenes, in the order given, each once.
    other = f"{doc_id}#1.0"
    both = _scenes_jsonl(sample_store, tmp_path, "--scene", sid, "--scene", other, "--scene", sid)
    assert [r["scene_id"] for r in both] == [sid, other]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--level", "0"], "counts scene levels from 1"),
        (["--level", "99"], "--level 99 is out of range: the scenes of this store go from level 1 to"),
        (["--scene", "alice-in-wonderland.txt#1.9999"], "no scene 'alice-in-wonderland.txt#1.9999'"),
        (["--scene", "alice-in-wonderland.txt#1.0", "--level", "2"], "is above scene"),
        (["--scene", "alice-in-wonderland.txt#1.0", "--doc", "alice-in-wonderland.txt"], "not both"),
        (["--level", "1", "--doc", "no-such-doc"], "no document 'no-such-doc'"),
        (["--gist"], "--gist needs --level N"),
        (["--level", "1", "--out", "{tmp}"], "is a directory"),
        (["--level", "1", "--out", "{tmp}/exists.txt"], "already exists"),
        (["--format", "jsonl", "--out", "{tmp}/new"], "--format applies to scenes"),
    ],
)
def test_level_mistakes_give_one_clear_line(sample_store, tmp_path, capsys, args, message):
    (tmp_path / "exists.txt").write_text("keep me")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["decompress", str(sample_store), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""
    assert (tmp_path / "exists.txt").read_text() == "keep me"


def test_inspect_level_table_agrees_with_the_tables(sample_store, tables, capsys):
    store = tables["store"]
    assert main(["inspect", str(sample_store), "--json"]) == 0
    levels = json.loads(capsys.readouterr().out)["levels"]
    units = store.read("occurrences", ["doc_id"]).num_rows
    tokens = sum(store.read("units", ["token_count", "occurrence_count"]).to_pandas().prod(axis=1))
    assert levels[0] == {"level": 0, "records": "units", "count": units, "mean_tokens": round(tokens / units, 2),
                         "codebook_size": store.read("hyperwords", ["hyperword"]).num_rows, "stream_length": units}
    scenes = store.read("scenes", ["level", "token_count"]).to_pandas()
    codebooks = store.read("codebooks", ["level"]).to_pandas()
    assert [r["level"] for r in levels] == list(range(0, scenes["level"].max() + 1))
    for row in levels[1:]:
        at = scenes[scenes["level"] == row["level"]]
        assert row["records"] == "scenes"
        assert row["count"] == row["stream_length"] == len(at)
        assert row["mean_tokens"] == round(at["token_count"].sum() / len(at), 2)
        assert row["codebook_size"] == (codebooks["level"] == row["level"]).sum() > 0
    # Levels shrink towards the roots.
    assert all(a["count"] > b["count"] for a, b in zip(levels, levels[1:]))

    assert main(["inspect", str(sample_store)]) == 0
    text = capsys.readouterr().out
    table = text[text.index("level  records"):].splitlines()
    assert len(table) == 1 + len(levels)
    for line, row in zip(table[1:], levels):
        cells = line.split()
        assert cells[:3] == [str(row["level"]), row["records"], f"{row['count']:,}"]
        assert cells[-1] == f"{row['stream_length']:,}"


def test_inspect_doc_draws_the_scene_tree(sample_store, tables, capsys):
    # A small document with two levels and few level-1 scenes: every node is drawn.
    small = next(d for d, n in sorted(tables["depth"].items()) if n == 2
                 and 2 < sum(1 for s in tables["scenes"] if s["doc_id"] == d and s["level"] == 1) <= 6)
    level1 = [s for s in tables["scenes"] if s["doc_id"] == small and s["level"] == 1]
    assert main(["inspect", str(sample_store), "--doc", small, "--width", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{small}: {tables['documents'][small]['unit_count']} units")
    assert lines[1].startswith("L2.0  units 0-")  # the root first, undrawn
    drawn = [line for line in lines[2:] if "L1." in line]
    assert len(drawn) == len(level1) == len(lines) - 2
    assert all(line.startswith("├─ L1.") for line in drawn[:-1]) and drawn[-1].startswith("└─ L1.")
    for line, scene in zip(drawn, level1):
        assert f"L1.{scene['index']}  units {scene['first_position']}-{scene['last_position']}  {scene['token_count']} tok  code " in line
        excerpt = line.split("  · ", 1)[1]
        gist = gist_text([tables["unit_text"][(small, p)] for p in scene["gist"]])
        assert excerpt == gist or (excerpt.endswith("…") and gist.startswith(excerpt[:-1]) and len(line) == 200)

    # A deep document, capped: "… N more" lines stand for the rest, and no line is wider than asked.
    deep = "alice-in-wonderland.txt"
    assert main(["inspect", str(sample_store), "--doc", deep, "--max-children", "2", "--width", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"L{tables['depth'][deep]}.0  units 0-")
    assert all(len(line) <= 80 for line in lines)
    more = [line for line in lines if " more (L" in line]
    assert more and all(line.lstrip("│ ").startswith("└─ … ") for line in more)
    # The same count worked out from the scenes table: two children drawn per scene, the rest in one line.
    children = defaultdict(list)
    for s in tables["scenes"]:
        if s["doc_id"] == deep:
            children[s["parent_scene_id"]].append(s)

    def expected(scene) -> tuple[int, list[int]]:
        kids = sorted(children[scene["scene_id"]], key=lambda s: s["index"]) if scene["level"] > 1 else []
        drawn, hidden = 1, [len(kids) - 2] if len(kids) > 2 else []
        for kid in kids[:2]:
            d, h = expected(kid)
            drawn, hidden = drawn + d, hidden + h
        return drawn, hidden

    drawn, hidden = expected(children[None][0])
    assert len(lines) - 1 - len(more) == drawn
    assert sorted(int(line.split("… ")[1].split(" more")[0].replace(",", "")) for line in more) == sorted(hidden)
    assert main(["inspect", str(sample_store), "--doc", deep, "--max-children", "0", "--width", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) - 1 == sum(1 for s in tables["scenes"] if s["doc_id"] == deep)

    assert main(["inspect", str(sample_store), "--doc", deep, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["scene_id"] for s in result["scenes"]] == sorted(
        (s["scene_id"] for s in tables["scenes"] if s["doc_id"] == deep),
        key=lambda sid: (int(sid.rsplit("#", 1)[1].split(".")[0]), int(sid.rsplit(".", 1)[1])))

    assert main(["inspect", str(sample_store), "--doc", "no-such-doc"]) == 2
    assert "no document 'no-such-doc'" in capsys.readouterr().err


def test_store_without_scenes_says_so(sample_store, tmp_path, capsys):
    """A store written before scene levels (format 1) has no scenes table: a clear line, and inspect
    shows only level 0."""
    old = tmp_path / "old"
    shutil.copytree(sample_store, old)
    manifest_path = old / "v000001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 1
    manifest["files"] = [f for f in manifest["files"] if f["table"] not in ("scenes", "codebooks")]
    manifest["counts"] = {k: v for k, v in manifest["counts"].items() if not k.startswith("level_")}
    manifest_path.write_text(json.dumps(manifest))
    assert main(["decompress", str(old), "--level", "1"]) == 2
    assert "has no scenes table" in capsys.readouterr().err
    assert main(["inspect", str(old), "--json"]) == 0
    assert [r["level"] for r in json.loads(capsys.readouterr().out)["levels"]] == [0]


def test_documents_without_units_have_no_scenes(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = {"empty.txt": b"", "blank.txt": b"  \n\t\n", "crlf.txt": "One line.\r\n\r\nAnother\tline here. And a third one — é!\r\n".encode(),
             "short.txt": b"Hello there."}
    for name, data in files.items():
        (corpus / name).write_bytes(data)
    store = tmp_path / "store"
    assert main(["compress", str(corpus), "--out", str(store)]) == 0
    capsys.readouterr()
    documents = {d["doc_id"]: d for d in StoreVersion(str(store)).read("documents").to_pylist()}
    records = _scenes_jsonl(store, tmp_path, "--level", "1")
    assert sorted(r["doc_id"] for r in records) == ["crlf.txt", "short.txt"]
    rebuilt = defaultdict(str)
    for r in records:
        rebuilt[r["doc_id"]] += r["prefix"] + r["text"]
    for name, data in files.items():  # a document without units is its prefix alone
        assert (rebuilt[name] or documents[name]["prefix"]).encode("utf-8") == data
    assert main(["decompress", str(store), "--level", "1", "--doc", "empty.txt"]) == 2
    assert "no scenes" in capsys.readouterr().err
    assert main(["inspect", str(store), "--doc", "blank.txt"]) == 0
    assert "no scenes (no units)" in capsys.readouterr().out


def test_damaged_document_gives_no_scene_texts_and_exit_status_1(sample_store, tmp_path, capsys):
    import pyarrow.parquet as pq

    damaged = tmp_path / "damaged"
    shutil.copytree(sample_store, damaged)
    units_file = next((damaged / "v000001" / "units").glob("*.parquet"))
    pq.write_table(units_with_alice_renamed(units_file), units_file)
    reseal(damaged / "v000001", units_file.relative_to(damaged / "v000001").as_posix())  # past the files' own check
    out = tmp_path / "level1.jsonl"
    assert main(["decompress", str(damaged), "--level", "1", "--format", "jsonl", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "did not match their stored sha256" in err and "alice-in-wonderland.txt" in err
    docs = {r["doc_id"] for r in _jsonl(out)}
    assert "alice-in-wonderland.txt" not in docs and "sign-of-the-four.md" in docs
    # Gists are lossy and not checked: they still come.
    assert main(["decompress", str(damaged), "--level", "1", "--gist", "--doc", "alice-in-wonderland.txt"]) == 0


def test_a_reader_that_stops_early_ends_the_command_quietly(sample_store):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "hyperscene.pipelines.cli", "decompress", str(sample_store), "--level", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(sample_store))
    assert process.stdout.readline().startswith(b"=== ")  # the output is larger than a pipe holds
    process.stdout.close()
    assert process.wait(timeout=120) == 141
    err = process.stderr.read()
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"unexpected error" not in err
