import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperscene.schemas import SORT_KEYS, TABLES
from hyperscene.transforms.store import writer
from hyperscene.transforms.errors import StoreError
from hyperscene.transforms.spill import spill_tables
from hyperscene.transforms.store.layout import published_versions, version_dir
from hyperscene.transforms.store.publish import ManifestInfo, _publish
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.store.writer import shard_of, sorted_runs, write_sorted_file, write_table_file


def test_every_table_has_a_schema_and_sort_keys():
    assert set(TABLES) == set(SORT_KEYS)
    for name, keys in SORT_KEYS.items():
        assert all(k in TABLES[name].names for k in keys)


def test_rows_are_sorted_and_extra_keys_dropped():
    rows = [{"unit_id": 2, "canonical_unit_id": 2, "method": "cosine", "score": 0.9, "hyperword": 1, "vector": [1.0]},
            {"unit_id": -1, "canonical_unit_id": 2, "method": "cosine", "score": 0.95, "hyperword": 1, "vector": [2.0]}]
    table = pa.concat_tables(list(sorted_runs("provenance", rows)))
    assert table.schema == TABLES["provenance"]
    assert table["unit_id"].to_pylist() == [-1, 2]


def test_shards_are_stable():
    assert shard_of("doc-1", 1) == 0
    assert shard_of("doc-1", 8) == shard_of("doc-1", 8)
    assert {shard_of(f"d{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_publish_writes_empty_tables_and_an_atomic_manifest(tmp_path):
    store = str(tmp_path / "store")
    path = version_dir(store, 1)
    assert published_versions(store) == []
    record = write_table_file(path, "dead_letters", 0, pa.Table.from_pylist([{"source": "s", "record": None, "reason": "r", "raw": b"x"}], schema=TABLES["dead_letters"]))
    manifest = _publish(path, ManifestInfo(config={"out": store}, model={"name": "m"}, started_at=0.0), [record], {"documents": 0})
    assert published_versions(store) == [1]
    assert not (tmp_path / "store" / "v000001" / "manifest.json.tmp").exists()
    assert {f["table"] for f in manifest["files"]} == set(TABLES)
    reopened = StoreVersion(store)
    assert reopened.manifest == json.loads((tmp_path / "store" / "v000001" / "manifest.json").read_text())
    assert reopened.read("dead_letters")["raw"].to_pylist() == [b"x"]
    assert reopened.read("units").num_rows == 0 and reopened.read("units").schema == TABLES["units"]


def test_reading_a_missing_store_or_version_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no published store version"):
        StoreVersion(str(tmp_path))


def occurrence_rows(doc_id: str, positions) -> "pa.Table":
    positions = list(positions)
    return pa.table({"doc_id": [doc_id] * len(positions), "position": positions, "unit_id": pa.array(positions, pa.int64()),
                     "separator": [" "] * len(positions),
                     "semantic_id": pa.array([[1, p % 7] for p in positions], pa.list_(pa.int32()))})


def test_spilled_rows_read_back_as_written_and_name_their_key_range(tmp_path):
    tables = [occurrence_rows("d", range(5, 10)), occurrence_rows("e", range(3))]
    first, second = spill_tables(tables, str(tmp_path / "rows.arrow"), SORT_KEYS["occurrences"])
    assert (first.first_key, first.last_key, second.first_key, second.last_key) == (("d", 5), ("d", 9), ("e", 0), ("e", 2))
    assert first.load().equals(tables[0]) and second.load(["position"]).column("position").to_pylist() == [0, 1, 2]
    middle = first.rows(1, 4)
    assert middle.load().equals(tables[0].slice(1, 3))
    with pytest.raises(ValueError, match="not within"):
        first.rows(2, 9)
    with pytest.raises(ValueError, match="empty table"):
        spill_tables([tables[0].slice(0, 0)], str(tmp_path / "empty.arrow"))
    assert list(tmp_path.iterdir()) == [tmp_path / "rows.arrow"]  # nothing half-written left beside it


def test_the_writer_streams_disjoint_parts_and_sorts_overlapping_ones(tmp_path):
    """Parts come in any order: spilled windows of one long document, tables, and dict rows whose
    keys fall among them. The file must hold every row in key order, in row groups of a fixed size,
    and be the file the whole sorted table would give."""
    windows = [occurrence_rows("long", range(w * 10, w * 10 + 10)) for w in range(6)]
    spilled = spill_tables(windows, str(tmp_path / "scratch" / "long.arrow"), SORT_KEYS["occurrences"])
    short = occurrence_rows("a", [2, 0, 1])  # unsorted within itself
    overlapping = occurrence_rows("long", [60, 61])  # its own part, yet adjacent to the last window
    dicts = occurrence_rows("b", [0, 1]).to_pylist()
    parts = [spilled[3], short, spilled[0], *dicts, spilled[5], overlapping, spilled[1], spilled[4], spilled[2]]
    runs = list(sorted_runs("occurrences", parts))
    assert [t.num_rows for t in runs] == [3, 2] + [10] * 6 + [2]  # every window alone: never the shard whole
    whole = pa.concat_tables([short, *[occurrence_rows("b", [0, 1])], *windows, overlapping]).sort_by(
        [("doc_id", "ascending"), ("position", "ascending")])
    assert pa.concat_tables(runs).equals(whole.cast(TABLES["occurrences"]))

    streamed = write_sorted_file(str(tmp_path / "v1"), "occurrences", 0, sorted_runs("occurrences", parts))
    at_once = write_table_file(str(tmp_path / "v2"), "occurrences", 0, whole.cast(TABLES["occurrences"]))
    assert streamed["sha256"] == at_once["sha256"] and streamed["rows"] == whole.num_rows == 67
    data = (tmp_path / "v1" / streamed["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == streamed["sha256"] and len(data) == streamed["bytes"]


def test_row_groups_have_a_fixed_size(tmp_path, monkeypatch):
    monkeypatch.setitem(writer.ROW_GROUP_ROWS, "occurrences", 4)
    parts = [occurrence_rows("d", range(0, 3)), occurrence_rows("d", range(3, 9)), occurrence_rows("d", range(9, 10))]
    record = write_sorted_file(str(tmp_path), "occurrences", 0, parts)
    metadata = pq.ParquetFile(tmp_path / record["path"]).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 4, 2]
    assert pq.read_table(tmp_path / record["path"]).column("position").to_pylist() == list(range(10))


def test_overlapping_spilled_parts_are_merged(tmp_path):
    evens, odds = spill_tables([occurrence_rows("d", range(0, 10, 2)), occurrence_rows("d", range(1, 10, 2))],
                               str(tmp_path / "rows.arrow"), SORT_KEYS["occurrences"])
    (run,) = sorted_runs("occurrences", [odds, evens])
    assert run.column("position").to_pylist() == list(range(10))
