"""Shared fixtures. Paths are resolved from this file, never from the working directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "examples" / "sample-corpus"
RU_CORPUS = REPO / "tests" / "data" / "ru"


def units_with_alice_renamed(units_file: Path):
    """The units table of ``units_file`` with the first text starting "Alice" changed to "Alicia":
    one unit of alice-in-wonderland.txt no longer matches the document's sha256."""
    import pyarrow.parquet as pq

    table = pq.read_table(units_file)
    texts = table["text"].to_pylist()
    i = next(i for i, t in enumerate(texts) if t.startswith("Alice"))
    texts[i] = texts[i].replace("Alice", "Alicia", 1)
    return table.set_column(table.schema.get_field_index("text"), "text", [texts])


def reseal(version_dir: Path, relative: str) -> None:
    """Make the manifest agree with a data file changed in place, as a hostile or careless writer
    would: so that what is tested is the check after the manifest's sha256."""
    manifest_file = version_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    data = (version_dir / relative).read_bytes()
    [entry] = [e for e in manifest["files"] if e["path"] == relative]
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_file.write_text(json.dumps(manifest))


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def model_folder() -> str:
    from hyperscene.transforms.model_catalog import resolve_model

    return resolve_model("bundled")[0]


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> Path:
    """The sample corpus compressed once with default settings, shared by read-only tests."""
    from hyperscene.pipelines import compress

    store = tmp_path_factory.mktemp("sample") / "store"
    compress.run([str(SAMPLE_CORPUS), "--out", str(store)])
    return store


def spill_everything(monkeypatch) -> dict:
    """Lower every threshold of the runs' spill policy (transforms/spill.py) so that each document
    counts as long, and count the spills made by kind."""
    import os

    from hyperscene.transforms import spill

    spilled = {"texts": 0, "slices": 0, "rows": 0}
    spill_tables, spill_text = spill.spill_tables, spill.spill_text

    def counting_tables(tables, path, keys=()):
        spilled["slices" if os.path.basename(path).startswith("slice-") else "rows"] += 1
        return spill_tables(tables, path, keys)

    def counting_text(doc, folder):
        spilled["texts"] += 1
        return spill_text(doc, folder)

    lowest = spill.SpillPolicy(None, text_bytes=1, slice_rows=1, part_rows=1)
    monkeypatch.setattr(spill.SpillPolicy, "for_scratch", classmethod(
        lambda cls, folder: dataclasses.replace(lowest, folder=folder if spill.is_local(folder) else None)))
    monkeypatch.setattr(spill, "spill_tables", counting_tables)
    monkeypatch.setattr(spill, "spill_text", counting_text)
    return spilled


def spill_nothing(monkeypatch) -> None:
    """Make every run's spill policy take its scratch folder for a remote one, so that values travel."""
    from hyperscene.transforms import spill

    monkeypatch.setattr(spill, "is_local", lambda path: False)


def data_files(store: Path, version: int | None = None) -> dict[str, str]:
    from hyperscene.transforms.store.reader import StoreVersion

    return {f["path"]: f["sha256"] for f in StoreVersion(str(store), version).manifest["files"]}

