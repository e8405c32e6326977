"""hyperscene verify, log and inspect --version on copies of the sample store.

``sample_store`` is shared and read-only: every test that damages a store first copies it into its
own tmp_path. Paths are absolute (one test changes into tmp_path on purpose to try a relative one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import units_with_alice_renamed
from hyperscene.pipelines.cli import main
from hyperscene.schemas import TABLES
from hyperscene.transforms.store.writer import write_table_file

V1 = "v000001"
DOCUMENT_TABLES = ("documents", "occurrences", "units")


def copy_store(sample_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    return store


def run(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.strip().splitlines()


def manifest_of(store: Path, version: str = V1) -> dict:
    return json.loads((store / version / "manifest.json").read_text())


def rewrite_table(store: Path, table: str, data: pa.Table) -> str:
    """Replace a table's only file with ``data`` written as compress writes it, and record the new
    file's size, rows and sha256 in the manifest, so that only the document check can notice."""
    [entry] = [f for f in manifest_of(store)["files"] if f["table"] == table]
    assert entry["path"] == f"{table}/part-00000.parquet"
    new = write_table_file(str(store / V1), table, 0, data.cast(TABLES[table]))
    manifest = manifest_of(store)
    manifest["files"] = [new if f["path"] == new["path"] else f for f in manifest["files"]]
    (store / V1 / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return f"{V1}/{new['path']}"


def flip_byte(path: Path, where: str) -> None:
    data = bytearray(path.read_bytes())
    i = {"first": 0, "middle": len(data) // 2, "footer": len(data) - 12}[where]
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_clean_store_verifies(sample_store, capsys):
    code, out, err = run(capsys, "verify", sample_store)
    assert code == 0 and not err, err
    files = len(manifest_of(sample_store)["files"])
    documents = manifest_of(sample_store)["counts"]["documents"]
    assert out == [f"ok      {sample_store} version 1: {files} files ({manifest_of(sample_store)['counts']['store_bytes']:,} "
                   f"bytes) checked against the manifest, {documents} of {documents} documents match their sha256"]
    assert run(capsys, "verify", sample_store, "--version", "1")[0] == 0


@pytest.mark.parametrize("where", ["first", "middle", "footer"])
@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_flipped_byte_in_any_table_is_reported_naming_its_file(sample_store, tmp_path, capsys, table, where):
    store = copy_store(sample_store, tmp_path)
    name = f"{V1}/{next(f['path'] for f in manifest_of(store)['files'] if f['table'] == table)}"
    flip_byte(store / name, where)
    code, out, err = run(capsys, "verify", store)
    assert code == 1
    assert len(err) == 1 and "[E505]" in err[0] and "is damaged" in err[0] and "Traceback" not in err[0], err
    file_lines = [line for line in out if not line.startswith(("error   document", "skipped"))]
    assert len(file_lines) == 1 and file_lines[0].startswith(f"error   {name}: "), out  # that file, no other
    assert "differs from the manifest" in file_lines[0]
    unreadable = "no longer reads as Parquet" in file_lines[0]
    assert unreadable or "still reads as Parquet" in file_lines[0]
    if table in DOCUMENT_TABLES and unreadable:
        assert f"skipped documents: not checked against their sha256: {name} is missing or unreadable" in out
        assert "documents not checked" in err[0]
    else:
        assert not any(line.startswith("skipped") for line in out)


def test_missing_file_is_an_error_and_document_checks_are_skipped(sample_store, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    (store / V1 / "occurrences" / "part-00000.parquet").unlink()
    code, out, err = run(capsys, "verify", store)
    assert code == 1
    assert out == [
        f"error   {V1}/occurrences/part-00000.parquet: missing: the manifest lists it, the version's folder does not hold it",
        f"skipped documents: not checked against their sha256: {V1}/occurrences/part-00000.parquet is missing or unreadable",
    ]
    assert len(err) == 1 and "1 file problem, documents not checked" in err[0]


def test_a_file_the_manifest_does_not_list_is_a_warning(sample_store, tmp_path, capsys, monkeypatch):
    store = copy_store(sample_store, tmp_path)
    (store / V1 / "notes.txt").write_text("left here by hand")
    (store / V1 / "units" / "part-00001.parquet").write_bytes((store / V1 / "units" / "part-00000.parquet").read_bytes())
    monkeypatch.chdir(tmp_path)  # a relative store path names files the same way
    code, out, err = run(capsys, "verify", "store")
    assert code == 0 and not err, err
    assert out[:2] == [
        f"warning {V1}/notes.txt: in the version's folder but not in its manifest (not part of the version)",
        f"warning {V1}/units/part-00001.parquet: in the version's folder but not in its manifest (not part of the version)",
    ]
    assert len(out) == 3 and out[2].startswith("ok      store version 1: ") and out[2].endswith("; 2 warning(s)")


def test_a_document_that_no_longer_matches_its_sha256_is_named(sample_store, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    rewrite_table(store, "units", units_with_alice_renamed(store / V1 / "units" / "part-00000.parquet"))
    code, out, err = run(capsys, "verify", store)
    assert code == 1
    assert out == [
        f"error   document 'alice-in-wonderland.txt': its text rebuilt from {V1}/occurrences/part-00000.parquet and "
        f"{V1}/units/part-00000.parquet does not match the sha256 in {V1}/documents/part-00000.parquet"
    ]
    documents = manifest_of(store)["counts"]["documents"]
    assert len(err) == 1 and f"is damaged: 1 of {documents} documents do not rebuild to their sha256" in err[0], err


def test_a_unit_missing_from_the_units_table_and_occurrences_of_no_document(sample_store, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    occurrences = pq.read_table(store / V1 / "occurrences" / "part-00000.parquet")
    alice = occurrences.filter(pc.equal(occurrences["doc_id"], "alice-in-wonderland.txt"))
    lost = alice["unit_id"][5].as_py()
    first_use = alice["position"][alice["unit_id"].to_pylist().index(lost)].as_py()
    units = pq.read_table(store / V1 / "units" / "part-00000.parquet")
    rewrite_table(store, "units", units.filter(pc.not_equal(units["unit_id"], lost)))
    # Occurrences of a document id that sorts before every real one: they must not shift the others.
    doc_id = occurrences.schema.get_field_index("doc_id")
    stray = occurrences.slice(0, 3).set_column(doc_id, "doc_id", pa.array(["!stray"] * 3)).cast(occurrences.schema)
    occurrences_file = rewrite_table(store, "occurrences", pa.concat_tables([stray, occurrences]))
    code, out, err = run(capsys, "verify", store)
    assert code == 1
    users = sorted(set(occurrences.filter(pc.equal(occurrences["unit_id"], lost))["doc_id"].to_pylist()))
    assert out[0] == f"error   {occurrences_file}: holds occurrences of 1 document id(s) the documents table lacks, e.g. '!stray'"
    assert [line.partition("': ")[0] + "'" for line in out[1:]] == [f"error   document {d!r}" for d in users]
    assert f"uses unit {lost} (position {first_use}), which the units table lacks" in out[1 + users.index("alice-in-wonderland.txt")]
    # decompress stops on it with one line too, and status 1 as for any document that fails verification
    code, _, err = run(capsys, "decompress", store, "--doc", "alice-in-wonderland.txt")
    assert code == 1 and len(err) == 1 and f"uses unit {lost}" in err[0], err


def test_an_unreadable_manifest_is_one_line(sample_store, tmp_path, capsys):
    store = copy_store(sample_store, tmp_path)
    manifest = store / V1 / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:-40])
    code, out, err = run(capsys, "verify", store)
    assert code == 1 and not out
    assert len(err) == 1 and f"{V1}/manifest.json in {store} is not a readable manifest" in err[0], err


def test_verify_of_a_version_that_does_not_exist_is_one_line(sample_store, tmp_path, capsys):
    for args, message in (([sample_store, "--version", "9"], "has no version 9 (has: 1)"),
                          ([tmp_path / "nothing"], "holds no published store version")):
        code, out, err = run(capsys, "verify", *args)
        assert code == 2 and not out and len(err) == 1 and message in err[0], err


def two_versions(sample_store: Path, tmp_path: Path) -> Path:
    """A store with versions 1 and 2 and the folder of an unpublished version 3. Version 2 is made by
    copying v000001 and editing the manifest's "version", as no command writes a second version yet;
    v000003 holds a data file but no manifest, as a run killed before publishing leaves it."""
    store = copy_store(sample_store, tmp_path)
    shutil.copytree(store / V1, store / "v000002")
    manifest = manifest_of(store, "v000002")
    manifest["version"] = 2
    (store / "v000002" / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (store / "v000003" / "units").mkdir(parents=True)
    (store / "v000003" / "units" / "part-00000.parquet").write_bytes(b"from a run that was killed")
    return store


def test_log_lists_versions_oldest_first_and_unpublished_folders(sample_store, tmp_path, capsys):
    store = two_versions(sample_store, tmp_path)
    (store / "v000004").mkdir()  # an empty folder: a run killed before it wrote anything
    m = manifest_of(store)
    c = m["counts"]
    code, out, err = run(capsys, "log", store)
    assert code == 0 and not err, err
    assert out[0].split() == ["version", "created_at", "documents", "units", "input", "bytes", "store", "bytes", "written",
                              "bytes", "format", "made", "by"]
    for version, line in zip((1, 2), out[1:3]):
        assert line.split() == [str(version), m["created_at"], f"{c['documents']:,}", f"{c['units']:,}",
                                f"{c['input_bytes']:,}", f"{c['store_bytes']:,}", f"{c['written_bytes']:,}", str(m["format_version"]),
                                "compress"]
    assert [line.split(None, 1) for line in out[3:]] == [["3", "unpublished (ignored)"], ["4", "unpublished (ignored)"]]

    code, out, err = run(capsys, "log", store, "--json")
    assert code == 0
    versions = json.loads("\n".join(out))["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "published"), (2, "published"), (3, "unpublished"),
                                                               (4, "unpublished")]
    assert versions[1] == {"version": 2, "status": "published", "created_at": m["created_at"], "documents": c["documents"],
                           "units": c["units"], "input_bytes": c["input_bytes"], "store_bytes": c["store_bytes"],
                           "written_bytes": c["written_bytes"], "format_version": m["format_version"], "made_by": "compress"}

    code, out, err = run(capsys, "log", tmp_path / "nothing")
    assert code == 2 and len(err) == 1 and "holds no store versions" in err[0], err


def test_verify_and_inspect_take_a_version_and_default_to_the_latest(sample_store, tmp_path, capsys):
    store = two_versions(sample_store, tmp_path)
    (store / V1 / "units" / "part-00000.parquet").unlink()  # version 1 is damaged, version 2 is not
    code, out, _ = run(capsys, "verify", store)
    assert code == 0 and out[-1].startswith(f"ok      {store} version 2: ")
    code, out, err = run(capsys, "verify", store, "--version", "1")
    assert code == 1 and out[0].startswith(f"error   {V1}/units/part-00000.parquet: missing")

    code, out, _ = run(capsys, "inspect", store, "--json")
    assert code == 0 and json.loads("\n".join(out))["version"] == 2
    code, out, _ = run(capsys, "inspect", store, "--version", "2")
    assert code == 0 and out[0] == f"store             {store} (version 2, format {manifest_of(store)['format_version']})"
    code, out, err = run(capsys, "inspect", store, "--version", "3")  # a folder without a manifest is no version
    assert code == 2 and not out and len(err) == 1 and "has no version 3 (has: 1, 2)" in err[0], err

    # the manifest says version 1 although its folder is version 2: a copy, not what was published there
    manifest = manifest_of(store, "v000002")
    manifest["version"] = 1
    (store / "v000002" / "manifest.json").write_text(json.dumps(manifest, indent=2))
    code, out, _ = run(capsys, "verify", store)
    assert code == 1 and out == ["error   v000002/manifest.json: says it is version 1, but its folder is version 2"]
