"""Versions that share files: refresh lists the earlier versions' vector files instead of copying them;
compact rewrites many files into few; vacuum deletes what no kept version uses, safely under SIGKILL;
format-3 stores (tests/data/format3, written before sharing existed) are read and refreshed as they are."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import files_under
from crashkit import Run, command, scan
from hyperscene.pipelines.cli import main
from hyperscene.schemas import FORMAT_VERSION
from hyperscene.transforms.store.layout import published_versions
from hyperscene.transforms.store.reader import StoreVersion

FORMAT3 = Path(__file__).parent / "data" / "format3"


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
    """The fixture's input, then two growths of it: a new document each."""
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


def test_refreshing_a_format_3_store_shares_its_vector_files(grown_store, inputs, tmp_path, capsys):
    v1, v2 = StoreVersion(str(grown_store), 1), StoreVersion(str(grown_store), 2)
    assert (v1.manifest["format_version"], v2.manifest["format_version"]) == (3, FORMAT_VERSION)
    shared = [e for e in v2.entries() if "version" in e]
    assert {e["table"] for e in shared} == {"vectors"}
    assert [{k: v for k, v in e.items() if k != "version"} for e in shared] == v1.files("vectors")
    assert all(e["version"] == 1 and not (grown_store / "v000002" / e["path"]).exists() for e in shared)
    counts = v2.manifest["counts"]
    assert counts["written_bytes"] == counts["store_bytes"] - sum(e["bytes"] for e in shared)
    assert v2.manifest["table_bytes"]["vectors"] == counts["vector_bytes"]
    assert sum(v2.manifest["table_bytes"].values()) == counts["store_bytes"]
    for version, documents in documents_of(inputs).items():
        serves(grown_store, version, documents, tmp_path, capsys)


def test_compact_merges_the_vector_files_into_one_per_bucket_and_keeps_every_row(grown_store):
    v3, v4 = StoreVersion(str(grown_store), 3), StoreVersion(str(grown_store), 4)
    assert len(v3.files("vectors")) == 3 and len(v4.files("vectors")) == 1
    assert v4.manifest["compact"] == {"from_version": 3, "files_before": len(v3.entries()), "files_merged": 3, "files_written": 1}
    for table in ("vectors", "units", "occurrences", "scenes", "documents"):
        assert v4.read(table).sort_by(v4.read(table).column_names[0]).equals(v3.read(table).sort_by(v3.read(table).column_names[0]))
    # tables already in one file are shared, not rewritten
    assert {e["table"] for e in v4.entries() if "version" not in e and e["rows"]} == {"vectors"}
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
    assert sorted(p.name for p in store.iterdir()) == ["v000003", "v000004"]  # v3 holds tables v4 shares
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


def _killed_at(argv: list[str], store: Path, delay: float, log_dir: Path, name: str):
    """Run ``argv``, SIGKILL it ``delay`` seconds after it takes the store's lock (or let it finish)."""
    with Run(argv, store, 0, log_dir, name) as run:
        locked_at = None
        while run.child.poll() is None:
            view = run._tick()
            if locked_at is None and "_lock" in view.paths:
                locked_at = view.elapsed
            if locked_at is not None and view.elapsed - locked_at >= delay:
                return run.kill()
        return run.wait()


def _lock_to_exit(argv: list[str], store: Path, log_dir: Path) -> float:
    with Run(argv, store, 0, log_dir, "timed") as run:
        outcome = run.wait()
    assert outcome.returncode == 0, outcome.stderr
    return outcome.elapsed - outcome.timeline["_lock"]


def test_vacuum_killed_at_any_moment_leaves_every_kept_version_whole(grown_store, inputs, tmp_path, capsys):
    documents = documents_of(inputs)
    reference = tmp_path / "reference"
    shutil.copytree(grown_store, reference)
    window = _lock_to_exit(command("vacuum", str(reference), "--keep", "2"), reference, tmp_path / "logs")
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
        assert files_under(store) == files_under(reference)
    with capsys.disabled():
        print(f"\nCRASH | vacuum | {KILLS} kills over {window:.2f} s after the lock | paths deleted when killed: {left}")


def test_compact_killed_at_any_moment_leaves_the_latest_version_whole(grown_store, inputs, tmp_path, capsys):
    documents = documents_of(inputs)
    base = tmp_path / "base"
    shutil.copytree(grown_store, base)
    assert main(["vacuum", str(base), "--keep", "2"]) == 0
    shutil.rmtree(base / "v000004")  # back to version 3 of many vector files, as if never compacted
    window = _lock_to_exit(command("compact", str(base)), base, tmp_path / "logs")
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


# --- damaged sharing ------------------------------------------------------------------------------


def test_a_manifest_that_names_a_later_version_or_a_missing_shared_file_is_damage(grown_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(grown_store, store)
    manifest_file = store / "v000002" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    [shared] = [e for e in manifest["files"] if "version" in e]
    shared["version"] = 3
    manifest_file.write_text(json.dumps(manifest))
    code, out, err = cli(capsys, "verify", store, "--version", 2)
    assert code == 1 and "neither this version nor an earlier one" in out + err

    shared_by_3 = [e for e in StoreVersion(str(store), 3).entries() if "version" in e and e["table"] == "vectors"]
    (store / f"v{shared_by_3[0]['version']:06d}" / shared_by_3[0]["path"]).unlink()
    code, out, err = cli(capsys, "verify", store, "--version", 3)
    assert code == 1 and "as a file of an earlier version" in out
