"""Shared fixtures. Paths are resolved from this file, never from the working directory."""

from __future__ import annotations

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


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def model_folder() -> str:
    from hyperscene.transforms.models import resolve_model

    return resolve_model("bundled")[0]


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> Path:
    """The sample corpus compressed once with default settings, shared by read-only tests."""
    from hyperscene.pipelines import compress

    store = tmp_path_factory.mktemp("sample") / "store"
    compress.run([str(SAMPLE_CORPUS), "--out", str(store)])
    return store
