"""Damaged and hostile stores (issue 14, items 1, 2 and 12): every reader refuses them with one coded
line that names the file and says to run verify, before trusting any of it; nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE_CORPUS
from hyperscene.pipelines.cli import main

V1 = "v000001"


def _remove(store: Path) -> str:
    (store / V1 / "units" / "part-00000.parquet").unlink()
    return f"{V1}/units/part-00000.parquet in {store} is missing"


def _truncate(store: Path) -> str:
    path = store / V1 / "units" / "part-00000.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"{V1}/units/part-00000.parquet in {store} holds"


def _edit_manifest(change):
    def damage(store: Path) -> str:
        path = store / V1 / "manifest.json"
        text = change(json.loads(path.read_text()))
        path.write_text(text if isinstance(text, str) else json.dumps(text))
        return f"{V1}/manifest.json in {store}"
    return damage


def _escape(manifest: dict) -> dict:
    [units] = [f for f in manifest["files"] if f["table"] == "units"]
    units["path"] = "../../../../../../../../etc/passwd"
    return manifest


DAMAGES = {
    "table file removed": _remove,
    "table file truncated": _truncate,
    "manifest not JSON": _edit_manifest(lambda m: "{\"format_version\": 2, "),
    "manifest without files": _edit_manifest(lambda m: {k: v for k, v in m.items() if k != "files"}),
    "format_version a string": _edit_manifest(lambda m: {**m, "format_version": "3"}),
    "manifest path outside the version": _edit_manifest(_escape),
}

COMMANDS = {
    "decompress": lambda s, t: ["decompress", str(s), "--out", str(t / "restored")],
    "decompress --doc": lambda s, t: ["decompress", str(s), "--doc", "sign-of-the-four.md"],
    "export": lambda s, t: ["export", str(s), "--out", str(t / "restored")],
    "sql": lambda s, t: ["sql", str(s), "SELECT count(*) AS n FROM units"],
    "inspect": lambda s, t: ["inspect", str(s)],
    "refresh": lambda s, t: ["refresh", str(s), str(SAMPLE_CORPUS)],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_every_reader_refuses_a_damaged_store_in_one_coded_line(sample_store, tmp_path, capsys, damage, command):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    expected = DAMAGES[damage](store)
    code = "E411" if expected.startswith(f"{V1}/manifest.json") else "E410"
    capsys.readouterr()
    assert main(COMMANDS[command](store, tmp_path)) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"hyperscene {command.split()[0]}: error: [{code}] ") and "\n" not in err, err
    assert expected in err and f"hyperscene verify {store}" in err, err
    assert "root:" not in captured.out  # /etc/passwd never reaches the user
    assert not (tmp_path / "restored").exists()
    assert sorted(p.name for p in store.iterdir()) == [V1]  # refresh checked before any work: no version, no scratch


@pytest.mark.parametrize("damage", DAMAGES)
def test_verify_names_the_damage(sample_store, tmp_path, capsys, damage):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    expected = DAMAGES[damage](store)
    assert main(["verify", str(store)]) == 1
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert expected.split(" in ")[0] in shown and "Traceback" not in shown, shown
    assert "root:" not in shown
