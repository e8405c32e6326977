import json

import pytest

from hyperscene.schemas import SORT_KEYS, TABLES
from hyperscene.transforms.errors import StoreError
from hyperscene.transforms.store import ManifestInfo, StoreVersion, _publish, published_versions, parts_to_table, shard_of, version_dir, write_table_file


def test_every_table_has_a_schema_and_sort_keys():
    assert set(TABLES) == set(SORT_KEYS)
    for name, keys in SORT_KEYS.items():
        assert all(k in TABLES[name].names for k in keys)


def test_rows_are_sorted_and_extra_keys_dropped():
    rows = [{"unit_id": "b", "canonical_unit_id": "b", "method": "cosine", "score": 0.9, "hyperword": 1, "vector": [1.0]},
            {"unit_id": "a", "canonical_unit_id": "b", "method": "cosine", "score": 0.95, "hyperword": 1, "vector": [2.0]}]
    table = parts_to_table("provenance", rows)
    assert table.schema == TABLES["provenance"]
    assert table["unit_id"].to_pylist() == ["a", "b"]


def test_shards_are_stable():
    assert shard_of("doc-1", 1) == 0
    assert shard_of("doc-1", 8) == shard_of("doc-1", 8)
    assert {shard_of(f"d{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_publish_writes_empty_tables_and_an_atomic_manifest(tmp_path):
    store = str(tmp_path / "store")
    path = version_dir(store, 1)
    assert published_versions(store) == []
    record = write_table_file(path, "dead_letters", 0, parts_to_table("dead_letters", [{"source": "s", "record": None, "reason": "r", "raw": b"x"}]))
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
