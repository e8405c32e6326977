"""hyperscene refresh: the plan, the per-bucket join, near-duplicates against stored units, and
end-to-end refreshes of a small store (static embedder, so they stay quick)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import SAMPLE_CORPUS, data_files, files_under, spill_everything, spill_nothing
from hyperscene.pipelines import compress, decompress, inspect_store, refresh
from hyperscene.pipelines.cli import main
from hyperscene.schemas import FORMAT_VERSION
from hyperscene.transforms.errors import StoreBusy, StoreError
from hyperscene.transforms.refresh import match_fresh_units, merge_bucket, plan_refresh
from hyperscene.transforms.store.layout import LOCK, published_versions
from hyperscene.transforms.store.lock import StoreLock
from hyperscene.transforms.store.reader import StoreVersion


def doc(doc_id, sha, revision=1, deleted=False):
    return {"doc_id": doc_id, "sha256": sha, "revision": revision, "deleted": deleted}


# --- plan ---------------------------------------------------------------------------------------


def test_plan_sorts_documents_into_new_changed_unchanged_and_missing():
    stored = [doc("a", "1"), doc("b", "2", revision=3), doc("c", "3"), doc("gone", "4", deleted=True)]
    plan = plan_refresh(stored, [("a", "1"), ("b", "20"), ("d", "5"), ("gone", "4")], delete_missing=False)
    assert plan.process == {"b", "d", "gone"}
    assert plan.revisions == {"b": 4, "d": 1, "gone": 2}  # a deleted document that comes back is a new revision
    assert plan.removed == {"b", "gone"} and plan.deleted == frozenset()
    assert (plan.new, plan.changed, plan.unchanged, plan.missing) == (1, 2, 1, 1)
    assert not plan.empty


def test_plan_deletes_missing_documents_only_when_asked():
    stored = [doc("a", "1"), doc("b", "2")]
    assert plan_refresh(stored, [("a", "1")], delete_missing=False).empty
    plan = plan_refresh(stored, [("a", "1")], delete_missing=True)
    assert plan.deleted == {"b"} and plan.removed == {"b"} and plan.process == frozenset()


def test_plan_counts_only_dead_letters_the_store_lacks():
    stored = [doc("a", "1")]
    known = [("bad.txt", None, "invalid UTF-8")]
    assert plan_refresh(stored, [("a", "1")], False, known, known).empty
    plan = plan_refresh(stored, [("a", "1")], False, known, known + [("worse.txt", None, "unreadable")])
    assert plan.new_dead_letters == 1 and not plan.empty


# --- the per-bucket join ------------------------------------------------------------------------


def units_rows(ids, counts, hyperwords, texts=None):
    return pa.table({
        "unit_id": ids, "text": texts or [f"text {u}" for u in ids], "occurrence_count": pa.array(counts, pa.int64()),
        "token_count": pa.array([2] * len(ids), pa.int64()), "word_count": pa.array([2] * len(ids), pa.int64()),
        "hyperword": pa.array(hyperwords, pa.int32()), "hyperword_score": pa.array([0.9] * len(ids), pa.float32()),
    })


def occurrences(doc_id, unit_texts):
    from hyperscene.transforms.unit_ids import unit_id

    return pa.table({
        "doc_id": [doc_id] * len(unit_texts), "position": pa.array(range(len(unit_texts)), pa.int64()),
        "text": unit_texts, "separator": [" "] * len(unit_texts), "unit_id": [unit_id(t) for t in unit_texts],
    })


def test_merge_bucket_splits_fresh_from_known_units_and_recounts():
    from hyperscene.transforms.unit_ids import unit_id

    old, gone = unit_id("known"), unit_id("gone")
    stored = units_rows(sorted([old, gone]), [2, 1] if old < gone else [1, 2], [5, 6] if old < gone else [6, 5],
                        ["known", "gone"] if old < gone else ["gone", "known"])
    new = occurrences("d", ["known", "fresh", "fresh"])
    merged = merge_bucket(0, [new], [stored], removed=[pa.array([gone, old])], members=[pa.array([gone])])

    counts = dict(zip(merged.stored_units["unit_id"].to_pylist(), merged.stored_units["occurrence_count"].to_pylist()))
    assert counts == {old: 2 - 1 + 1, gone: 0}  # one occurrence left with a removed document, one came
    assert merged.fresh.units["unit_id"].to_pylist() == [unit_id("fresh")]
    assert merged.fresh.units["occurrence_count"].to_pylist() == [2]
    assert merged.fresh.occurrences.num_rows == 2
    assert merged.known.units["unit_id"].to_pylist() == [old]
    assert merged.known.occurrences["hyperword"].to_pylist() == [dict(zip(stored["unit_id"].to_pylist(), stored["hyperword"].to_pylist()))[old]]
    assert merged.member_units == 0 and merged.member_occurrences == 0  # the member lost its last occurrence


def test_merge_counts_the_stored_non_latin_units_that_come_into_use_or_fall_out_of_it():
    """W002's count is the stored one plus these changes, not a reading of every stored text."""
    from hyperscene.transforms.unit_ids import unit_id

    texts = ["Привет, мир.", "Да.", "Hello.", "Нет."]
    ids = [unit_id(t) for t in texts]
    order = sorted(range(4), key=lambda i: ids[i])
    counts = {"Привет, мир.": 1, "Да.": 0, "Hello.": 1, "Нет.": 2}
    stored = units_rows([ids[i] for i in order], [counts[texts[i]] for i in order], [1] * 4, [texts[i] for i in order])
    # one document leaves with "Привет, мир." and "Hello."; a new one uses "Да." and a fresh unit
    merged = merge_bucket(0, [occurrences("d", ["Да.", "Ещё."])], [stored],
                          removed=[pa.array([unit_id("Привет, мир."), unit_id("Hello.")])], members=[])
    assert merged.non_latin_change == 1 - 1  # "Да." came into use, "Привет, мир." fell out; "Hello." is Latin
    merged = merge_bucket(0, [], [stored], removed=[pa.array([unit_id("Привет, мир.")])], members=[])
    assert merged.non_latin_change == -1


def test_a_new_text_under_a_stored_units_id_stops_the_refresh():
    """Two texts with one 64-bit id (unit_ids.py): the stored unit is never served the new text."""
    from hyperscene.transforms.errors import StoreError
    from hyperscene.transforms.unit_ids import unit_id

    stored = units_rows([unit_id("known")], [1], [5], ["another text that collided"])
    with pytest.raises(StoreError, match=r"^\[E442\]"):
        merge_bucket(0, [occurrences("d", ["known"])], [stored], removed=[], members=[])


# --- near-duplicates of fresh units -------------------------------------------------------------


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def fresh_table(ids, counts):
    return pa.table({"unit_id": ids, "occurrence_count": pa.array(counts, pa.int64())})


def test_fresh_units_merge_into_stored_canonicals_which_stay_canonical():
    stored = np.stack([unit([1, 0, 0]), unit([0, 1, 0])])
    fresh = np.stack([unit([1, 0.05, 0]), unit([0, 0, 1]), unit([0, 0.02, 1])])
    rows = match_fresh_units(7, ["s1", "s2"], stored, fresh_table(["f1", "f2", "f3"], [1, 5, 1]), fresh, 0.95)
    merged = {r["unit_id"]: r["canonical_unit_id"] for r in rows}
    assert merged == {"f1": "s1", "f3": "f2"}  # f2 ranks first by count and becomes a canonical itself
    assert all(r["hyperword"] == 7 and r["score"] >= 0.95 for r in rows)


def test_with_the_word_check_a_fresh_unit_merges_into_a_stored_canonical_of_the_same_words():
    stored = np.stack([unit([1, 0, 0]), unit([0, 1, 0])])
    fresh = np.stack([unit([1, 0.05, 0]), unit([0.05, 1, 0])])
    table = fresh_table(["f1", "f2"], [1, 1]).append_column("text", pa.array(["Holmes lit his pipe!", "Watson lit his pipe."]))
    rows = match_fresh_units(7, ["s1", "s2"], stored, table, fresh, 0.95, check="words",
                             canonical_texts=["Holmes lit his pipe.", "Holmes lit his pipe."])
    assert [(r["unit_id"], r["canonical_unit_id"], r["method"]) for r in rows] == [("f1", "s1", "cosine+same-words")]
    # without the stored texts, no merge into a stored canonical can be checked, so none is made
    assert match_fresh_units(7, ["s1", "s2"], stored, table, fresh, 0.95, check="words") == []


def test_a_fresh_unit_never_merges_into_a_member_chain():
    # f2 is near f1 only; f1 merges into s1; f2 must not chain into s1 through f1.
    stored = np.stack([unit([1, 0, 0])])
    f1, f2 = unit([1, 0.3, 0]), unit([1, 0.6, 0])
    assert float(stored[0] @ f1) >= 0.95 and float(f1 @ f2) >= 0.95 and float(stored[0] @ f2) < 0.95
    rows = match_fresh_units(0, ["s1"], stored, fresh_table(["f1", "f2"], [2, 1]), np.stack([f1, f2]), 0.95)
    assert {r["unit_id"]: r["canonical_unit_id"] for r in rows} == {"f1": "s1"}


def test_no_stored_canonicals_is_the_compress_rule():
    from hyperscene.transforms.near_dup import group_near_duplicates

    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8)).astype(np.float32)
    vectors = np.concatenate([base, base + rng.normal(scale=0.05, size=base.shape).astype(np.float32)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"u{i:02d}" for i in range(len(vectors))]
    counts = [1 + (i % 3) for i in range(len(vectors))]
    expected = {(ids[m], ids[c]) for m, c, _, _ in group_near_duplicates(ids, vectors, counts, 0.95, check="none")[0]}
    rows = match_fresh_units(0, [], np.zeros((0, 8), np.float32), fresh_table(ids, counts), vectors, 0.95)
    assert {(r["unit_id"], r["canonical_unit_id"]) for r in rows} == expected and expected


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two sample documents, small enough that each compress or refresh takes seconds."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "in").mkdir()
    shutil.copy(SAMPLE_CORPUS / "sign-of-the-four.md", root / "in" / "sign.md")
    text = (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_bytes()
    (root / "in" / "alice.txt").write_bytes(text[: len(text) // 3])
    return root / "in"


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, corpus) -> Path:
    store = tmp_path_factory.mktemp("base") / "store"
    compress.run([str(corpus), "--out", str(store), "--embedder", "static"])
    return store


@pytest.fixture(scope="module")
def float16_store(tmp_path_factory, corpus) -> Path:
    """base_store with float16 vectors: what the pq store's refresh and retrain must decide as."""
    store = tmp_path_factory.mktemp("float16") / "store"
    compress.run([str(corpus), "--out", str(store), "--embedder", "static", "--vectors", "float16"])
    return store


def grown(tmp_path: Path, corpus: Path) -> Path:
    """The corpus with alice.txt changed and a new document."""
    out = tmp_path / "grown"
    shutil.copytree(corpus, out)
    alice = (out / "alice.txt").read_bytes()
    (out / "alice.txt").write_bytes(alice.replace(b"Rabbit", b"Hare", 3) + b"\r\nAnd then, quite suddenly, it ended.\r\n")
    text = (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_bytes()
    (out / "new.txt").write_bytes(text[len(text) // 3: len(text) // 2])
    return out


def restored(store: Path, out: Path, version: int | None = None) -> dict[str, bytes]:
    decompress.run([str(store), "--out", str(out)] + ([] if version is None else ["--version", str(version)]))
    return files_under(out)


def test_refresh_adds_a_version_that_round_trips_and_keeps_the_old_one(tmp_path, corpus, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    source = grown(tmp_path, corpus)
    result = refresh.run([str(store), str(source)])

    assert result["version"] == 2 and result["changed"]
    assert {k: result["refresh"][k] for k in ("new_documents", "changed_documents", "unchanged_documents")} == \
        {"new_documents": 1, "changed_documents": 1, "unchanged_documents": 1}
    assert restored(store, tmp_path / "v2") == files_under(source)
    assert restored(store, tmp_path / "v1", version=1) == files_under(corpus)
    assert main(["verify", str(store)]) == 0 and main(["verify", str(store), "--version", "1"]) == 0

    v1, v2 = StoreVersion(str(store), 1), StoreVersion(str(store), 2)
    docs = {d["doc_id"]: d for d in v2.read("documents").to_pylist()}
    assert (docs["alice.txt"]["revision"], docs["alice.txt"]["added_in_version"]) == (2, 2)
    assert (docs["sign.md"]["revision"], docs["sign.md"]["added_in_version"]) == (1, 1)
    assert (docs["new.txt"]["revision"], docs["new.txt"]["added_in_version"]) == (1, 2)

    # Frozen codebooks: the same centroids, and every stored unit keeps its hyperword.
    assert v1.read("hyperwords", ["centroid"]).equals(v2.read("hyperwords", ["centroid"]))
    assert v1.read("codebooks", ["level", "code", "centroid"]).equals(v2.read("codebooks", ["level", "code", "centroid"]))
    before = dict(zip(*(v1.read("units", ["unit_id", "hyperword"])[c].to_pylist() for c in ("unit_id", "hyperword"))))
    after = dict(zip(*(v2.read("units", ["unit_id", "hyperword"])[c].to_pylist() for c in ("unit_id", "hyperword"))))
    assert {u: after[u] for u in before} == before
    # Only units never stored were embedded, and every unit has exactly one vector.
    fresh = set(after) - set(before)
    assert result["counts"]["fresh_units"] == len(fresh) > 0
    vector_ids = v2.read("vectors", ["unit_id"])["unit_id"].to_pylist()
    assert sorted(vector_ids) == sorted(after)
    # Stored merges stay; the old scenes of unchanged documents are the same rows.
    assert set(v1.read("provenance")["unit_id"].to_pylist()) <= set(v2.read("provenance")["unit_id"].to_pylist())
    sign = lambda v: v.read("scenes").filter(pa.compute.equal(v.read("scenes")["doc_id"], "sign.md"))
    assert sign(v1).equals(sign(v2))
    assert result["refresh"]["drift"]["fresh_units"] == len(fresh) and result["refresh"]["drift"]["ratio"] > 0
    # The counts W002 reads are kept up to date; the version records the precision it ran in.
    assert v2.manifest["counts"]["non_latin_units"] == 0 and v2.manifest["model"]["precision"] == "float32"  # static


def test_a_refresh_decides_near_duplicates_as_it_would_with_float16_vectors(tmp_path, corpus, base_store, float16_store):
    """The default pq store and a float16 one, refreshed with the same documents, merge the same
    fresh units into the same canonicals: the decisions rest on vectors embedded again from text,
    and pq's stored codes only choose which stored units to embed (refresh/candidates.py)."""
    source = grown(tmp_path, corpus)
    # sentences of a stored document with other line ends and punctuation: near-duplicates of stored units
    sign = (corpus / "sign.md").read_text()
    (source / "echo.txt").write_text(sign[:6000].replace(". ", "! "))
    merges = {}
    for encoding, stored in (("pq", base_store), ("float16", float16_store)):
        store = tmp_path / encoding
        shutil.copytree(stored, store)
        result = refresh.run([str(store), str(source)])
        v1, v2 = StoreVersion(str(store), 1), StoreVersion(str(store), 2)
        new = v2.read("provenance").filter(pa.compute.invert(pa.compute.is_in(
            v2.read("provenance")["unit_id"], value_set=v1.read("provenance")["unit_id"])))
        merges[encoding] = sorted(zip(new["unit_id"].to_pylist(), new["canonical_unit_id"].to_pylist()))
        stored_ids = set(v1.read("units")["unit_id"].to_pylist())
        assert any(c in stored_ids for _, c in merges[encoding])  # some merge into a stored canonical
        assert 0 < result["refresh"]["candidates_embedded"] < len(stored_ids) / 4
    assert merges["pq"] == merges["float16"]


def test_refresh_precision_is_this_runs_choice(tmp_path, base_store):
    """Like --device, --precision belongs to the run: a store compressed on a GPU in float16 is
    refreshed on a CPU without naming one."""
    saved = dict(StoreVersion(str(base_store)).manifest["config"], precision="float16", device="cuda")
    stored = type("Stored", (), {"manifest": {"config": saved}, "store": str(base_store)})()
    args, beam_args = refresh.parse([str(base_store), str(tmp_path)])
    cfg = refresh.store_config(stored, args, beam_args)
    assert (cfg.device, cfg.precision) == ("cpu", "auto")
    args, beam_args = refresh.parse([str(base_store), str(tmp_path), "--precision", "float32"])
    assert refresh.store_config(stored, args, beam_args).precision == "float32"


def test_an_unchanged_input_makes_no_version(tmp_path, corpus, base_store, capsys):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    before = files_under(store)
    # Scratch of a run killed after it published: cleared by the next writer, which holds the lock.
    (store / "_work" / "v000001").mkdir(parents=True)
    (store / "_work" / "v000001" / "vectors-000000.npy").write_bytes(b"left by a killed run")
    assert main(["refresh", str(store), str(corpus)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert files_under(store) == before and published_versions(str(store)) == [1]


def test_the_cli_summarises_the_store_it_refreshed_wherever_it_was_compressed(tmp_path, corpus, base_store, capsys):
    store = tmp_path / "moved"
    shutil.copytree(base_store, store)  # the manifest's config.out names the original path
    assert main(["refresh", str(store), str(grown(tmp_path, corpus))]) == 0
    out = capsys.readouterr().out
    assert f"{store} (version 2, format {FORMAT_VERSION})" in out and "refresh of version 1" in out
    assert StoreVersion(str(store)).manifest["config"]["out"] == str(store)


def test_delete_missing_marks_documents_deleted(tmp_path, corpus, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    only_sign = tmp_path / "only"
    only_sign.mkdir()
    shutil.copy(corpus / "sign.md", only_sign / "sign.md")
    assert refresh.run([str(store), str(only_sign)])["changed"] is False  # missing, but kept without the flag

    result = refresh.run([str(store), str(only_sign), "--delete-missing"])
    assert result["version"] == 2 and result["counts"]["documents"] == 1 and result["counts"]["deleted_documents"] == 1
    v2 = StoreVersion(str(store))
    assert [d["doc_id"] for d in v2.read("documents").to_pylist() if d["deleted"]] == ["alice.txt"]
    assert "alice.txt" not in set(v2.read("occurrences")["doc_id"].to_pylist()) | set(v2.read("scenes")["doc_id"].to_pylist())
    assert restored(store, tmp_path / "out") == {"sign.md": (corpus / "sign.md").read_bytes()}
    with pytest.raises(StoreError, match="deleted in version 2.*--version 1"):
        decompress.run([str(store), "--doc", "alice.txt"])
    assert main(["verify", str(store)]) == 0


def test_a_second_writer_fails_while_the_lock_is_held(tmp_path, corpus, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    before = files_under(store)
    with StoreLock(str(store), "refresh"):
        with pytest.raises(StoreBusy, match=r"another refresh is writing this store \(pid \d+"):
            refresh.run([str(store), str(grown(tmp_path, corpus))])
    assert files_under(store) == before


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (store / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "refresh"}))
    with StoreLock(str(store), "refresh"):
        assert json.loads((store / LOCK).read_text())["pid"] == os.getpid()
    assert not (store / LOCK).exists()
    # A live process on another machine cannot be checked: its lock holds.
    (store / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "compress"}))
    with pytest.raises(StoreBusy, match="another compress"):
        with StoreLock(str(store), "refresh"):
            pass


def test_refresh_refuses_a_store_written_by_another_model(tmp_path, corpus, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    manifest = store / "v000001" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["model"]["fingerprint"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="differs from the one the store was written with"):
        refresh.run([str(store), str(grown(tmp_path, corpus))])
    assert published_versions(str(store)) == [1]


# --- retrain ------------------------------------------------------------------------------------


def test_recoding_with_the_stored_codebooks_gives_the_stored_codes(tmp_path, corpus):
    """recode_document (retrain) and encode_document (compress) agree: with the codebooks and
    hyperwords a version holds, and the scene centroids computed again from the stored (int8)
    vectors, every scene's code and child codes and every semantic id come out as stored, and
    every score within what int8 moves a cosine (a thousandth). (pq vectors move the centroids
    further: README, "Vectors", measures what a retrain keeps with them.)"""
    from hyperscene.transforms.store.reader import frozen_codebooks
    from hyperscene.schemas.unit_bucket import UnitBucket
    from hyperscene.transforms.retrain import document_occurrences, with_scene_centroids
    from hyperscene.transforms.retrain import recode_document
    from hyperscene.transforms.store.vector_codec import decode

    compress.run([str(corpus), "--out", str(tmp_path / "store"), "--embedder", "static", "--vectors", "int8"])
    v1 = StoreVersion(str(tmp_path / "store"))
    _, books = frozen_codebooks(v1)
    scenes, occurrences, units, vectors = (v1.read(t) for t in ("scenes", "occurrences", "units", "vectors"))
    vectors = vectors.take(pa.compute.index_in(units["unit_id"], value_set=vectors["unit_id"]))
    bucket = UnitBucket(0, units, occurrences.rename_columns(
        [c if c != "semantic_id" else "previous_semantic_id" for c in occurrences.column_names]), vectors=decode(vectors))
    for doc_id, occ in document_occurrences(bucket):
        mine = scenes.filter(pa.compute.equal(scenes["doc_id"], doc_id))
        [(_, occ, mine, centroids)] = with_scene_centroids((doc_id, {"occurrences": [occ], "scenes": [mine]}))
        table, recoded, members, (kept, compared) = recode_document(doc_id, occ, mine, centroids, dict(books))
        assert table.select(["scene_id", "code", "child_codes"]).to_pylist() == mine.select(["scene_id", "code", "child_codes"]).to_pylist()
        np.testing.assert_allclose(table["code_score"].to_numpy(), mine["code_score"].to_numpy(), atol=1e-3)
        assert kept == compared == occ.num_rows
        assert recoded["semantic_id"].to_pylist() == occ["previous_semantic_id"].to_pylist()


def test_a_retrain_of_a_pq_store_decides_as_one_of_a_float16_store(tmp_path, base_store, float16_store):
    """pq codes are embedded again from text for a retrain (decoded, they would move units to other
    hyperwords): the retrained stores give every unit the same hyperword, make the same merges and
    give every occurrence the same semantic id."""
    from hyperscene.pipelines import retrain

    decided = {}
    for encoding, stored in (("pq", base_store), ("float16", float16_store)):
        store = tmp_path / encoding
        shutil.copytree(stored, store)
        retrain.run([str(store)])
        v2 = StoreVersion(str(store), 2)
        units = v2.read("units", ["unit_id", "hyperword"])
        occurrences = v2.read("occurrences", ["doc_id", "position", "semantic_id"])
        decided[encoding] = (sorted(zip(units["unit_id"].to_pylist(), units["hyperword"].to_pylist())),
                             sorted(zip(*(v2.read("provenance")[c].to_pylist() for c in ("unit_id", "canonical_unit_id")))),
                             sorted(zip(occurrences["doc_id"].to_pylist(), occurrences["position"].to_pylist(),
                                        map(tuple, occurrences["semantic_id"].to_pylist()))))
    assert decided["pq"] == decided["float16"]
    assert StoreVersion(str(tmp_path / "pq"), 2).read("vectors").column_names == ["unit_id", "hyperword", "code", "error_angle"]


def test_kmeans_started_from_its_own_result_keeps_ids():
    from hyperscene.transforms.codebook import assign, train_codebook

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    first = train_codebook(vectors, 20, seed=0)
    again = train_codebook(vectors, 20, seed=5, init=first)  # another seed: only the start can keep the ids
    same = (assign(vectors, first)[0] == assign(vectors, again)[0]).mean()
    assert same > 0.9
    grown = train_codebook(vectors, 24, seed=0, init=first)
    assert grown.shape == (24, 16)


def test_refresh_retrains_on_drift_into_one_more_version(tmp_path, corpus, base_store):
    store = tmp_path / "store"
    shutil.copytree(base_store, store)
    source = grown(tmp_path, corpus)
    result = refresh.run([str(store), str(source), "--retrain-if-drift", "0.01"])  # any drift at all
    assert result["refreshed_version"] == 2 and result["version"] == 3
    assert published_versions(str(store)) == [1, 2, 3]
    retrain = result["retrain"]
    assert retrain["from_version"] == 2 and "drift ratio" in retrain["reason"]
    stability = retrain["stability"]
    assert stability["units"] == StoreVersion(str(store), 2).read("units").num_rows
    assert 0 < stability["units_kept_hyperword"] <= stability["units"]
    assert stability["occurrences"] == result["counts"]["units"]
    assert result["codebook"]["trained_in_version"] == 3 and result["codebook"]["baseline_mean_distance"] > 0
    assert restored(store, tmp_path / "v3") == files_under(source)
    assert main(["verify", str(store)]) == 0
    v3 = StoreVersion(str(store))
    hyperwords = dict(zip(v3.read("units")["unit_id"].to_pylist(), v3.read("units")["hyperword"].to_pylist()))
    vectors = dict(zip(v3.read("vectors")["unit_id"].to_pylist(), v3.read("vectors")["hyperword"].to_pylist()))
    assert hyperwords == vectors  # the vectors table follows the new assignment
    occ = v3.read("occurrences")
    assert [s[-1] for s in occ["semantic_id"].to_pylist()] == occ["hyperword"].to_pylist()
    # A refresh below the threshold retrains nothing.
    assert refresh.run([str(store), str(corpus), "--retrain-if-drift", "100"])["version"] == 4
    assert "retrain" not in StoreVersion(str(store)).manifest


def test_a_retrain_cut_short_is_owed_by_the_next_refresh():
    from hyperscene.pipelines.refresh import retrain_owed

    drifted = {"version": 5, "refresh": {"drift": {"ratio": 1.3}}}
    assert retrain_owed(drifted, 1.2) == "drift ratio 1.3 > 1.2 in version 5"
    assert retrain_owed(drifted, 1.3) is None and retrain_owed(drifted, None) is None
    assert retrain_owed({"version": 6, "retrain": {}}, 1.0) is None  # the retrain happened
    assert retrain_owed({"version": 2, "refresh": {"drift": {"ratio": None}}}, 0.5) is None  # nothing new was embedded


def test_drift_is_a_ratio_to_the_baseline_when_the_codebook_had_enough_units_per_hyperword():
    from hyperscene.transforms.refresh import MIN_UNITS_PER_HYPERWORD, drift_section

    stats = {"_fresh_units": 50, "_fresh_distance_total": 20.0, "_stored_units": 2_000, "_stored_distance_total": 640.0,
             "codebook_size": 89}
    drift = drift_section(stats, 0.32)
    assert drift["ratio"] == 1.25 and drift["reason"] is None
    assert drift["units_per_hyperword"] == 22.47 and drift["stored_mean_distance"] == 0.32
    # The units the baseline was measured over, when known, decide rather than the stored ones.
    assert drift_section(stats, 0.32, baseline_units=10 * 89)["ratio"] == 1.25
    few = drift_section(stats, 0.32, baseline_units=10 * 89 - 1)
    assert few["ratio"] is None and f"under {MIN_UNITS_PER_HYPERWORD}" in few["reason"]
    assert drift_section({**stats, "_fresh_units": 0}, 0.32)["reason"].startswith("no fresh units")
    assert "no baseline" in drift_section(stats, None)["reason"] and "no baseline" in drift_section(stats, 0.0)["reason"]


def test_drift_on_a_tiny_store_is_not_measured_and_retrains_nothing(tmp_path, caplog):
    """Issue 14: a codebook with about as many hyperwords as units sits on those very units (baseline
    near 0), so a ratio would be in the thousands and --retrain-if-drift would always fire."""
    from hyperscene.transforms.refresh import drift_warning

    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("The cat sat on the mat, and the dog slept by the fire.\nIt rained all day in the small town.\n")
    (source / "b.txt").write_text("A ship sailed out of the harbour at dawn.\nThe captain watched the grey sea and said nothing.\n")
    store = tmp_path / "store"
    compress.run([str(source), "--out", str(store), "--embedder", "static"])
    (source / "c.txt").write_text("Snow fell on the mountains, and the valley lay silent under the stars.\n")
    with caplog.at_level(logging.WARNING, logger="hyperscene"):
        result = refresh.run([str(store), str(source), "--retrain-if-drift", "1.5"])

    assert sum("[W003]" in r.getMessage() for r in caplog.records) == 1
    assert result["version"] == 2 and "retrain" not in result and published_versions(str(store)) == [1, 2]
    drift = result["refresh"]["drift"]
    assert drift["fresh_units"] > 0 and drift["fresh_mean_distance"] > 0
    assert drift["ratio"] is None and "per hyperword, under 10" in drift["reason"] and drift["units_per_hyperword"] < 10
    assert drift_warning(result).startswith("[W003] drift not measured: the codebook was trained on ")
    assert drift_warning(result) in inspect_store.summarise(StoreVersion(str(store)))["model_warnings"]
    # A later refresh with nothing new owes no retrain either.
    assert refresh.run([str(store), str(source), "--retrain-if-drift", "1.5"])["changed"] is False


def test_a_refresh_that_spills_long_documents_writes_what_values_give(tmp_path, corpus, base_store, monkeypatch):
    """Windows of 100 units and every spilling threshold lowered: the new documents' texts, slices
    (through the join with the stored units) and window outputs cross the shuffles as scratch files.
    The new version must be byte-identical to a refresh that carried values, and round-trip."""
    from hyperscene.transforms import scenes

    monkeypatch.setattr(scenes, "WINDOW_UNITS", 100)
    source = grown(tmp_path, corpus)
    stores = {"values": tmp_path / "values", "spilled": tmp_path / "spilled"}
    for store in stores.values():
        shutil.copytree(base_store, store)
    with monkeypatch.context() as values:
        spill_nothing(values)
        refresh.run([str(stores["values"]), str(source)])
    spilled = spill_everything(monkeypatch)
    refresh.run([str(stores["spilled"]), str(source)])
    assert all(spilled.values()), spilled
    assert data_files(stores["spilled"], 2) == data_files(stores["values"], 2)
    assert restored(stores["spilled"], tmp_path / "v2") == files_under(source)
    assert sorted(p.name for p in stores["spilled"].iterdir()) == ["v000001", "v000002"]
