"""Versions that share files: refresh lists the earlier versions' vector files instead of copying them;
compact rewrites many files into few; vacuum deletes what no kept version uses, safely under SIGKILL;
format-3 stores (tests/data/format3, written before sharing existed) are read and refreshed as they are."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

from conftest import files_under
from crashkit import Run, command, scan
from hyperscene.pipelines.cli import main
from hyperscene.schemas import FORMAT_VERSION
from hyperscene.transforms.store.layout import published_versions
from hyperscene.transforms.store.lock import clear_lock_leftovers
from hyperscene.transforms.store.reader import StoreVersion

FORMAT3 = Path(__file__).parent / "data" / "format3"
SHARED = ("vectors", "occurrences", "scenes", "provenance", "dead_letters", "units")


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def serves(store: Path, version: int, documents: dict[str, bytes], tmp_path: Path, capsys) -> None:
    """``version`` verifies and decompresses to ``documents``."""
    code, out, err = cli(capsys, "verify", store, "--version", version)
    assert code == 0, out + err
    restored = tmp_path / f"restored-{version}-{len(list(tmp_path.iterdir()))}"
    code, _, err = cli(capsys, "decompress", store, "--version", version, "--out", restored)
    assert code == 0, err
    assert files_under(restored) == documents


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """The fixture's input, then two growths of it: a new document each, and the second also changes
    a document (whose old rows stay in the shared files of version 1)."""
    root = tmp_path_factory.mktemp("inputs")
    first = root / "1"
    shutil.copytree(FORMAT3 / "input", first)
    second = root / "2"
    shutil.copytree(first, second)
    (second / "new.md").write_text("The fog lay thick upon the river. Holmes lit his pipe and said nothing at all.\n"
                                   "We waited, and the cab came at last, rattling over the stones.\n")
    third = root / "3"
    shutil.copytree(second, third)
    (third / "later.txt").write_text("A letter came in the morning. It was short, and it was not signed.\n")
    alice = (third / "alice.txt").read_bytes()
    (third / "alice.txt").write_bytes(alice.replace(b"Alice", b"Alicia", 2) + b"And so it went on, to the end.\n")
    return [first, second, third]


@pytest.fixture(scope="module")
def grown_store(tmp_path_factory, inputs) -> Path:
    """The format-3 fixture, refreshed twice (format 4) and compacted: four versions."""
    store = tmp_path_factory.mktemp("grown") / "store"
    shutil.copytree(FORMAT3 / "store", store)
    for folder in inputs[1:]:
        assert main(["refresh", str(store), str(folder)]) == 0
    assert main(["compact", str(store)]) == 0
    assert published_versions(str(store)) == [1, 2, 3, 4]
    return store


def documents_of(inputs: list[Path]) -> dict[int, dict[str, bytes]]:
    first, second, third = (files_under(f) for f in inputs)
    return {1: first, 2: second, 3: third, 4: third}


# --- format 3 -------------------------------------------------------------------------------------


def test_a_format_3_store_is_read_as_it_is(tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(FORMAT3 / "store", store)
    assert StoreVersion(str(store)).manifest["format_version"] == 3
    serves(store, 1, files_under(FORMAT3 / "input"), tmp_path, capsys)
    code, out, _ = cli(capsys, "inspect", store, "--json")
    assert code == 0 and json.loads(out)["format_version"] == 3
    code, out, _ = cli(capsys, "sql", store, "SELECT count(*) AS n FROM units")
    assert code == 0 and out.split()[2] == str(StoreVersion(str(store)).manifest["counts"]["distinct_units"])


def test_a_format_3_store_reads_in_today_s_types():
    """Its hex unit ids come as today's int64 ids of the same texts, its occurrences' stored
    hyperwords as the derived ones, and its scene centroids not at all; in Python and in SQL alike."""
    import pyarrow.parquet as pq

    from hyperscene.pipelines.sql import connect
    from hyperscene.schemas import read_schema
    from hyperscene.transforms.unit_ids import unit_id

    sv = StoreVersion(str(FORMAT3 / "store"))
    units = sv.read("units", ["unit_id", "text"])
    assert units.schema.field("unit_id").type == pa.int64()
    assert units["unit_id"].to_pylist() == [unit_id(t) for t in units["text"].to_pylist()]
    occurrences = sv.read("occurrences")
    assert occurrences.schema == read_schema("occurrences")
    [entry] = sv.files("occurrences")
    stored = pq.read_table(sv.file_path(entry), columns=["doc_id", "position", "hyperword"]).sort_by([("doc_id", "ascending"), ("position", "ascending")])
    assert occurrences.sort_by([("doc_id", "ascending"), ("position", "ascending")])["hyperword"].equals(stored["hyperword"])
    assert "centroid" in pq.read_schema(sv.file_path(sv.files("scenes")[0])).names and "centroid" not in sv.read("scenes").column_names
    con = connect(sv)
    assert sorted(con.sql("select unit_id, text from units").fetchall()) == sorted(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    assert con.sql("select count(*) from occurrences o join units u using (unit_id) where o.hyperword = o.semantic_id[-1]").fetchall() == [(len(occurrences),)]
    assert "centroid" not in [r[0] for r in con.sql("describe scenes").fetchall()]
    old_hex = {}
    for entry in sv.files("units"):
        old = pq.read_table(sv.file_path(entry), columns=["unit_id", "text"])
        old_hex.update(zip(old["text"].to_pylist(), (h[:16] for h in old["unit_id"].to_pylist())))
    assert dict(con.sql("select text, unit_hex(unit_id) from units").fetchall()) == old_hex


def test_refreshing_a_format_3_store_shares_its_files_and_writes_only_new_rows(grown_store, inputs, tmp_path, capsys):
    v1, v2, v3 = (StoreVersion(str(grown_store), v) for v in (1, 2, 3))
    assert (v1.manifest["format_version"], v2.manifest["format_version"]) == (3, FORMAT_VERSION)
    shared = [e for e in v2.entries() if "version" in e]
    assert {"vectors", "occurrences", "scenes", "units"} <= {e["table"] for e in shared} <= set(SHARED)
    assert [{k: v for k, v in e.items() if k != "version"} for e in shared] == [e for e in v1.entries() if e in shared or
                                                                               {**e, "version": 1} in shared]
    assert all(e["version"] == 1 for e in shared)
    assert not any((grown_store / "v000002" / e["path"]).exists() for e in shared if e["table"] == "vectors")  # no copies
    # the refresh wrote occurrences and scenes of the one new document, marked as its own revisions
    [own] = [e for e in v2.files("occurrences") if "version" not in e]
    assert own["documents"] == [2, 2] and own["rows"] == v2.read("occurrences").filter(
        pa.compute.equal(v2.read("occurrences")["doc_id"], "new.md")).num_rows
    # units: the refresh wrote rows only for the units it added or whose count changed; each unit's
    # newest row counts, and every unit of version 1 is still there
    [own_units] = [e for e in v2.files("units") if "version" not in e]
    assert 0 < own_units["rows"] < v2.read("units").num_rows and v2.layered("units")
    counts = dict(zip(*(v2.read("units", ["unit_id", "occurrence_count"])[c].to_pylist() for c in ("unit_id", "occurrence_count"))))
    assert set(v1.read("units")["unit_id"].to_pylist()) <= set(counts) and len(counts) == v2.read("units").num_rows
    assert sum(counts.values()) == v2.read("occurrences").num_rows == v2.manifest["counts"]["units"]
    # version 3 changed alice.txt: its old rows stay in version 1's files, and no reader sees them
    assert v3.layered("occurrences") and v3.layered("scenes")
    old = v1.read("occurrences").filter(pa.compute.equal(v1.read("occurrences")["doc_id"], "alice.txt")).num_rows
    new = v3.read("occurrences").filter(pa.compute.equal(v3.read("occurrences")["doc_id"], "alice.txt"))
    assert new.num_rows and new.num_rows != old and sorted(new["position"].to_pylist()) == list(range(new.num_rows))
    assert v3.read("documents").filter(pa.compute.equal(v3.read("documents")["doc_id"], "alice.txt"))["revision"].to_pylist() == [2]
    counts = v2.manifest["counts"]
    assert counts["written_bytes"] == counts["store_bytes"] - sum(e["bytes"] for e in shared)
    assert v2.manifest["table_bytes"]["vectors"] + v2.manifest["table_bytes"]["quantizer"] == counts["vector_bytes"]
    assert sum(v2.manifest["table_bytes"].values()) == counts["store_bytes"]
    for version, documents in documents_of(inputs).items():
        serves(grown_store, version, documents, tmp_path, capsys)


def test_compact_rewrites_shared_files_into_one_per_table_with_the_live_rows_only(grown_store):
    v3, v4 = StoreVersion(str(grown_store), 3), StoreVersion(str(grown_store), 4)
    assert len(v3.files("vectors")) == 3 and len(v4.files("vectors")) == 1
    rewritten = {e["table"] for e in v4.entries() if "version" not in e and e["rows"]}
    assert {"vectors", "occurrences", "scenes", "units"} <= rewritten <= set(SHARED)
    assert all(len([e for e in v4.files(t) if e["rows"]]) == 1 for t in rewritten)
    assert not any(v4.layered(t) for t in ("occurrences", "scenes", "units"))
    assert v4.manifest["compact"]["from_version"] == 3 and v4.manifest["compact"]["files_before"] == len(v3.entries())
    sort = {"vectors": "unit_id", "units": "unit_id", "occurrences": ["doc_id", "position"], "scenes": "scene_id",
            "documents": "doc_id", "provenance": "unit_id"}
    for table, key in sort.items():
        keys = [(k, "ascending") for k in ([key] if isinstance(key, str) else key)]
        assert v4.read(table).sort_by(keys).equals(v3.read(table).sort_by(keys).cast(v4.read(table).schema)), table
    # old revisions' rows are gone from the rewritten files: each file holds what version 3 holds
    assert sum(e["rows"] for e in v4.files("occurrences")) == v3.read("occurrences").num_rows
    # tables already in one file of the version's own are shared, not rewritten
    assert {e["table"] for e in v4.entries() if "version" in e} >= {"documents", "hyperwords"}
    assert v4.manifest["counts"]["units"] == v3.manifest["counts"]["units"]


def test_compact_with_nothing_to_merge_writes_no_version(grown_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    code, out, _ = cli(capsys, "compact", store)
    assert code == 0 and out.startswith("nothing to compact") and published_versions(str(store)) == [1, 2, 3, 4]


# --- vacuum ---------------------------------------------------------------------------------------


def test_vacuum_keeps_what_later_versions_share_and_deletes_the_rest(grown_store, inputs, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    before = files_under(store)
    code, out, _ = cli(capsys, "vacuum", store, "--keep", 2, "--dry-run", "--json")
    assert code == 0 and files_under(store) == before
    planned = json.loads(out)
    assert planned["kept"] == [3, 4] and planned["removed"] == [1, 2] and planned["dry_run"]

    code, out, _ = cli(capsys, "vacuum", store, "--keep", 2, "--json")
    assert code == 0 and {k: v for k, v in json.loads(out).items() if k != "dry_run"} == {
        k: v for k, v in planned.items() if k != "dry_run"}
    assert published_versions(str(store)) == [3, 4]
    freed = sum(len(data) for name, data in before.items()) - sum(len(data) for data in files_under(store).values())
    assert freed == planned["freed_bytes"] > 0
    documents = documents_of(inputs)
    for version in (3, 4):
        serves(store, version, documents[version], tmp_path, capsys)
    # version 1's vector files stay, for version 3 lists them; log says what the folder is
    code, out, _ = cli(capsys, "log", store, "--json")
    statuses = {r["version"]: r["status"] for r in json.loads(out)["versions"]}
    assert statuses == {1: "removed", 2: "removed", 3: "published", 4: "published"}
    assert not (store / "v000001" / "manifest.json").exists() and list((store / "v000001" / "vectors").iterdir())

    code, out, _ = cli(capsys, "vacuum", store, "--keep", 1)
    assert code == 0 and published_versions(str(store)) == [4]
    # the folders that hold files v4 lists: v2 wrote the centroids both refreshes share, v3 tables v4 shares
    assert sorted(p.name for p in store.iterdir()) == sorted({f"v{e.get('version', 4):06d}" for e in StoreVersion(str(store), 4).entries()}) \
        == ["v000002", "v000003", "v000004"]
    serves(store, 4, documents[4], tmp_path, capsys)


def test_vacuum_refuses_bad_options_and_an_unreadable_kept_version(grown_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    before = files_under(store)
    code, _, err = cli(capsys, "vacuum", store, "--keep", 0)
    assert code == 2 and "[E298]" in err
    (store / "v000004" / "manifest.json").write_text("{not json")
    code, _, err = cli(capsys, "vacuum", store, "--keep", 1)
    assert code == 2 and "[E441]" in err and "nothing was deleted" in err
    assert set(files_under(store)) == set(before)


# --- SIGKILL --------------------------------------------------------------------------------------

KILLS = 5


def _started_work(run: Run, view) -> bool:
    """The run holds the lock, or has already changed the store (a fast one may take and drop the
    lock between two looks)."""
    return "_lock" in view.paths or bool(view.new) or not set(run.before) <= view.paths


def _killed_at(argv: list[str], store: Path, delay: float, log_dir: Path, name: str):
    """Run ``argv``, SIGKILL it ``delay`` seconds after it starts work on the store (or let it finish)."""
    with Run(argv, store, 0, log_dir, name) as run:
        started = None
        while run.child.poll() is None:
            view = run._tick()
            if started is None and _started_work(run, view):
                started = view.elapsed
            if started is not None and view.elapsed - started >= delay:
                return run.kill()
        return run.wait()


def _work_seconds(argv: list[str], store: Path, log_dir: Path) -> float:
    """From the first look that sees the run at work on the store to its exit (at least one look)."""
    with Run(argv, store, 0, log_dir, "timed") as run:
        started = None
        while run.child.poll() is None:
            view = run._tick()
            if started is None and _started_work(run, view):
                started = view.elapsed
        outcome = run.wait()
    assert outcome.returncode == 0, outcome.stderr
    return max(outcome.elapsed - (started if started is not None else outcome.elapsed), 0.02)


def test_vacuum_killed_at_any_moment_leaves_every_kept_version_whole(grown_store, inputs, tmp_path, capsys):
    documents = documents_of(inputs)
    reference = tmp_path / "reference"
    shutil.copytree(grown_store, reference)
    window = _work_seconds(command("vacuum", str(reference), "--keep", "2"), reference, tmp_path / "logs")
    rng = random.Random(16)
    left = []
    for i in range(KILLS):
        store = tmp_path / f"store-{i}"
        shutil.copytree(grown_store, store)
        before = set(scan(store))
        outcome = _killed_at(command("vacuum", str(store), "--keep", "2"), store, (i + rng.random()) * window / KILLS,
                             tmp_path / "logs", f"kill-{i}")
        assert outcome.killed or outcome.returncode == 0, outcome.stderr
        left.append(len(before - set(scan(store))))
        assert published_versions(str(store))[-2:] == [3, 4]
        for version in (3, 4):
            serves(store, version, documents[version], tmp_path, capsys)
        code, _, err = cli(capsys, "vacuum", store, "--keep", "2")  # a re-run finishes the work
        assert code == 0, err
        # a kill while taking the lock may leave its temporary file: the next writer removes it once stale
        assert {k: v for k, v in files_under(store).items() if not k.startswith("_lock.")} == files_under(reference)
    with capsys.disabled():
        print(f"\nCRASH | vacuum | {KILLS} kills over {window:.2f} s of work | paths deleted when killed: {left}")


def test_compact_killed_at_any_moment_leaves_the_latest_version_whole(grown_store, inputs, tmp_path, capsys):
    documents = documents_of(inputs)
    base = tmp_path / "base"
    shutil.copytree(grown_store, base)
    assert main(["vacuum", str(base), "--keep", "2"]) == 0
    shutil.rmtree(base / "v000004")  # back to version 3 of many vector files, as if never compacted
    window = _work_seconds(command("compact", str(base)), base, tmp_path / "logs")
    shutil.rmtree(base / "v000004")
    rng = random.Random(17)
    for i in range(3):
        store = tmp_path / f"store-{i}"
        shutil.copytree(base, store)
        outcome = _killed_at(command("compact", str(store)), store, (i + rng.random()) * window / 3, tmp_path / "logs", f"kill-{i}")
        assert outcome.killed or outcome.returncode == 0, outcome.stderr
        serves(store, published_versions(str(store))[-1], documents[3], tmp_path, capsys)
        code, _, err = cli(capsys, "compact", store)
        assert code == 0, err
        assert published_versions(str(store)) == [3, 4]
        serves(store, 4, documents[4], tmp_path, capsys)


def test_temporary_lock_files_of_killed_writers_are_removed_once_stale(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(ended.stdout)
    stale, young = tmp_path / f"_lock.{pid}.0123456789ab.tmp", tmp_path / f"_lock.{pid}.ba9876543210.tmp"
    mine = tmp_path / f"_lock.{os.getpid()}.aaaaaaaaaaaa.tmp"
    for f in (stale, young, mine):
        f.write_text("{}")
    old = time.time() - 120
    for f in (stale, mine):
        os.utime(f, (old, old))
    clear_lock_leftovers(str(tmp_path))
    assert not stale.exists() and young.exists() and mine.exists()  # too young, or its process still runs


# --- damaged sharing ------------------------------------------------------------------------------


def test_a_manifest_that_names_a_later_version_or_a_missing_shared_file_is_damage(grown_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    manifest_file = store / "v000002" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    shared = [e for e in manifest["files"] if "version" in e and e["table"] == "vectors"][0]
    shared["version"] = 3
    manifest_file.write_text(json.dumps(manifest))
    code, out, err = cli(capsys, "verify", store, "--version", 2)
    assert code == 1 and "neither this version nor an earlier one" in out + err

    shared_by_3 = [e for e in StoreVersion(str(store), 3).entries() if "version" in e and e["table"] == "vectors"]
    (store / f"v{shared_by_3[0]['version']:06d}" / shared_by_3[0]["path"]).unlink()
    code, out, err = cli(capsys, "verify", store, "--version", 3)
    assert code == 1 and "as a file of an earlier version" in out


# --- vector encodings and half-precision centroids -------------------------------------------------


def test_int8_vectors_read_back_within_a_thousandth_of_a_cosine():
    import numpy as np
    import pyarrow as pa

    from hyperscene.schemas import VECTOR_SCHEMAS
    from hyperscene.transforms.store.vector_codec import decode, vector_table

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids, hws = pa.array(np.arange(500, dtype=np.int64)), pa.array(np.zeros(500, np.int32))
    for encoding, tolerance in (("float16", 1e-3), ("int8", 1e-3)):
        table = vector_table(ids, hws, vectors, encoding)
        assert table.schema == VECTOR_SCHEMAS[encoding]
        back = decode(table)
        assert back.dtype == np.float32 and back.shape == vectors.shape
        cosines = np.einsum("ij,ij->i", back, vectors) / np.linalg.norm(back, axis=1)
        assert cosines.min() > 1 - tolerance, (encoding, cosines.min())
    assert vector_table(ids, hws, vectors, "int8").nbytes < 0.6 * vector_table(ids, hws, vectors, "float16").nbytes


@pytest.fixture(scope="module")
def store_without_vectors(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("novectors") / "store"
    assert main(["compress", str(FORMAT3 / "input"), "--out", str(store), "--vectors", "none"]) == 0
    return store


def test_a_store_without_vectors_decompresses_and_refuses_refresh_in_one_line(store_without_vectors, inputs, tmp_path, capsys):
    stored = StoreVersion(str(store_without_vectors))
    assert stored.manifest["config"]["vectors"] == "none" and stored.read("vectors").num_rows == 0
    serves(store_without_vectors, 1, files_under(FORMAT3 / "input"), tmp_path, capsys)
    for args in (["refresh", store_without_vectors, inputs[1]], ["retrain", store_without_vectors]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "[E409]" in err and "--vectors none" in err, err
    assert published_versions(str(store_without_vectors)) == [1]


def test_encode_with_a_store_without_vectors_finds_exact_matches_and_says_it_cannot_find_near_ones(store_without_vectors, caplog):
    import logging

    from hyperscene.transforms.encoder import Encoder

    with caplog.at_level(logging.WARNING, logger="hyperscene"):
        encoder = Encoder.from_store(str(store_without_vectors))
    assert "[W006]" in caplog.text
    text = (FORMAT3 / "input" / "alice.txt").read_bytes().decode("utf-8")
    doc = encoder.encode(text + "\n\nA sentence this store has never seen before today.")
    assert doc.text().startswith(text)
    assert all(u.stored and u.match.kind == "exact" for u in doc.units[:-1])
    assert not doc.units[-1].stored and doc.units[-1].match is None


def test_pq_is_the_default_and_a_refresh_keeps_the_store_s_encoding_and_quantizer(grown_store, inputs, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["compress", str(FORMAT3 / "input"), "--out", str(store)]) == 0
    first = StoreVersion(str(store))
    assert first.manifest["config"]["vectors"] == "pq"
    assert {"code", "error_angle"} <= set(first.read("vectors").column_names)
    quantizer = first.quantizer()
    assert quantizer.shape == (384 // 4, 256, 4)
    assert main(["refresh", str(store), str(inputs[1])]) == 0
    second = StoreVersion(str(store))
    assert second.version == 2 and "code" in second.read("vectors").column_names
    [entry] = second.files("quantizer")
    assert entry["version"] == 1  # shared, not written again
    np.testing.assert_array_equal(second.quantizer(), quantizer)
    assert main(["verify", str(store)]) == 0
    # the format-3 store kept float16, and its refreshes go on writing float16
    for version in (1, 2, 3):
        assert StoreVersion(str(grown_store), version).read("vectors").schema.field("vector").type.value_type == "halffloat"


def test_every_encoding_bounds_the_angle_its_decoded_vectors_lie_from_the_embedded_ones():
    import pyarrow as pa

    from hyperscene.schemas import VECTOR_SCHEMAS
    from hyperscene.transforms.store.vector_codec import (angle_between, decode, error_angles, quantizer_from_table,
                                                          quantizer_rows, train_quantizer, vector_table)

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 384))
    vectors = (centres[rng.integers(0, 40, 3000)] + 0.6 * rng.normal(size=(3000, 384))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids, hws = pa.array(np.arange(3000, dtype=np.int64)), pa.array(np.zeros(3000, np.int32))
    quantizer = train_quantizer(vectors[:2000], seed=0)
    assert quantizer.shape == (96, 256, 4)
    np.testing.assert_array_equal(quantizer_from_table(pa.Table.from_pylist(list(quantizer_rows(quantizer))[::-1])), quantizer)
    sizes = {}
    for encoding in ("pq", "int8", "float16"):
        table = vector_table(ids, hws, vectors, encoding, quantizer)
        assert table.schema == VECTOR_SCHEMAS[encoding]
        back = decode(table, quantizer)
        assert back.shape == vectors.shape
        true = angle_between(vectors, back / np.linalg.norm(back, axis=1, keepdims=True))
        assert (error_angles(table) >= true).all(), encoding
        sizes[encoding] = table.nbytes
    assert sizes["pq"] < 0.3 * sizes["int8"] < 0.3 * sizes["float16"]
    with pytest.raises(ValueError, match="quantizer"):
        decode(vector_table(ids, hws, vectors, "pq", quantizer))
    # a sample smaller than the centroids: each row is its own centroid, so those rows decode exactly
    few = train_quantizer(vectors[:10], seed=0)
    table = vector_table(ids[:10], hws[:10], vectors[:10], "pq", few)
    np.testing.assert_allclose(decode(table, few), vectors[:10], atol=1e-3)


def test_candidates_by_the_error_bound_miss_no_pair_the_embedded_vectors_would_merge():
    """Stored units coded in pq, fresh ones exact: every stored unit within the threshold of a
    fresh one is a candidate, and most of the others are not."""
    import pyarrow as pa

    from hyperscene.transforms.refresh.candidates import candidates_of
    from hyperscene.transforms.store.vector_codec import decode, error_angles, train_quantizer, vector_table

    rng = np.random.default_rng(4)
    stored = rng.normal(size=(4000, 384)).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    # fresh units near some stored ones, at cosines around the threshold, and unrelated ones
    near = stored[:300] + rng.uniform(0.1, 0.5, (300, 1)).astype(np.float32) * rng.normal(size=(300, 384)).astype(np.float32) / np.sqrt(384)
    fresh = np.concatenate([near, rng.normal(size=(100, 384)).astype(np.float32)])
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    quantizer = train_quantizer(stored, seed=0)
    table = vector_table(pa.array(np.arange(4000, dtype=np.int64)), pa.array(np.zeros(4000, np.int32)), stored, "pq", quantizer)
    threshold = 0.95
    exact = fresh @ stored.T
    must = np.flatnonzero((exact >= threshold).any(axis=0))
    assert 50 < len(must) < 300  # the pairs straddle the threshold
    found = candidates_of(fresh, decode(table, quantizer), error_angles(table), threshold)
    assert set(must) <= set(found)
    assert len(found) < 400


@pytest.mark.parametrize("reader", ["pandas", "duckdb", "polars", "datasets"])
def test_half_precision_centroids_read_as_they_are(reader, grown_store):
    """Each library reads the float16 centroid lists of hyperwords and codebooks (the centroids table
    from format 6 on) as floats (scenes keep none)."""
    import numpy as np

    stored = StoreVersion(str(grown_store), 4)
    for table in ("centroids",):
        [entry] = [e for e in stored.files(table) if e["rows"]]
        path = stored.file_path(entry)
        expected = np.array(stored.read(table, ["centroid"])["centroid"].to_pylist(), np.float32)
        if reader == "pandas":
            import pandas as pd

            values = pd.read_parquet(path)["centroid"].tolist()
        elif reader == "duckdb":
            import duckdb

            values = [row[0] for row in duckdb.sql(f"SELECT centroid FROM read_parquet('{path}')").fetchall()]
        elif reader == "polars":
            import polars as pl

            values = pl.read_parquet(path)["centroid"].to_list()
        else:
            import datasets

            values = datasets.Dataset.from_parquet(path)["centroid"]
        got = np.array([np.asarray(v, np.float32) for v in values])
        assert got.shape == expected.shape and expected.shape[0] > 0
        np.testing.assert_allclose(got, expected, rtol=0, atol=0)  # the same float16 values, widened


@pytest.mark.parametrize("load", [False, True], ids=["views", "loaded"])
def test_sql_sees_what_the_version_holds_of_shared_files(grown_store, load):
    from hyperscene.pipelines.sql import connect

    v3 = StoreVersion(str(grown_store), 3)
    assert v3.layered("occurrences")
    con = connect(str(grown_store), 3, load=load)
    for table in ("occurrences", "scenes"):
        expected = v3.read(table, ["doc_id"])["doc_id"].value_counts().to_pylist()
        got = con.execute(f"select doc_id, count(*) from {table} group by doc_id").fetchall()
        assert sorted(got) == sorted((c["values"], c["counts"]) for c in expected), table
    assert v3.layered("units")
    expected = v3.read("units", ["unit_id", "occurrence_count"])
    got = con.execute("select unit_id, occurrence_count from units").fetchall()
    assert sorted(got) == sorted(zip(expected["unit_id"].to_pylist(), expected["occurrence_count"].to_pylist()))


def test_retrain_of_a_version_that_shares_files_reads_only_its_rows(grown_store, inputs, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    shutil.rmtree(store / "v000004")  # back to version 3: occurrences, scenes and units in files of 1, 2 and 3
    assert StoreVersion(str(store)).layered("units") and StoreVersion(str(store)).layered("occurrences")
    code, _, err = cli(capsys, "retrain", store)
    assert code == 0, err
    v3, v4 = StoreVersion(str(store), 3), StoreVersion(str(store), 4)
    assert v4.manifest["retrain"]["from_version"] == 3
    assert v4.read("occurrences").num_rows == v3.read("occurrences").num_rows
    assert sorted(v4.read("units")["unit_id"].to_pylist()) == sorted(v3.read("units")["unit_id"].to_pylist())
    serves(store, 4, documents_of(inputs)[3], tmp_path, capsys)
