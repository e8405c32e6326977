"""A store version read for an export: live documents in doc_id order with their occurrences in
batches, unit texts and token counts, documents rebuilt and checked against their sha256, and
scenes by document and level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hyperscene.transforms.errors import Errors, VerificationFailed
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.documents import OCCURRENCE_COLUMNS, assemble_documents, matches_sha256
from hyperscene.transforms.store.reader import StoreVersion

# Documents handed to assemble_documents at once: bounds the Python lists made from the tables.
BATCH_DOCUMENTS = 256


def live_documents(store: StoreVersion):
    """The documents table in doc_id order, without rows a later format marks ``deleted``."""
    import pyarrow.compute as pc

    documents = store.read("documents")
    if "deleted" in documents.column_names:
        documents = documents.filter(pc.invert(pc.fill_null(documents["deleted"], False)))
    return documents.sort_by("doc_id")


def document_batches(store: StoreVersion, documents, columns: list[str]) -> Iterator[tuple[object, object]]:
    """(documents rows, their occurrences) in batches of :data:`BATCH_DOCUMENTS`, in doc_id order;
    occurrences sorted by (doc_id, position), with ``columns``."""
    import pyarrow.compute as pc

    occurrences = store.read("occurrences", columns).sort_by([("doc_id", "ascending"), ("position", "ascending")])
    span: dict[str, tuple[int, int]] = {}
    if occurrences.num_rows:
        runs = pc.run_end_encode(occurrences["doc_id"].combine_chunks().cast("string"))
        ends = runs.run_ends.to_pylist()
        for doc_id, start, end in zip(runs.values.to_pylist(), [0, *ends[:-1]], ends):
            span[doc_id] = (start, end)
    for first in range(0, documents.num_rows, BATCH_DOCUMENTS):
        batch = documents.slice(first, BATCH_DOCUMENTS)
        spans = [span[d] for d in batch["doc_id"].to_pylist() if d in span]
        if spans:
            start, end = spans[0][0], spans[-1][1]
            yield batch, occurrences.slice(start, end - start)
        else:
            yield batch, occurrences.slice(0, 0)


@dataclass
class UnitTables:
    text_of: dict[str, str]
    tokens_of: dict[str, int]
    counted_with: str


def read_units(store: StoreVersion, tokenizer_name: str | None, need_text: bool = True) -> UnitTables:
    """Unit texts and token counts: the store's own (the embedding model's tokenizer, no special
    tokens), or each distinct unit counted once with ``tokenizer_name``."""
    units = store.read("units", ["unit_id", "text", "token_count"] if need_text or tokenizer_name else ["unit_id", "token_count"])
    ids = units["unit_id"].to_pylist()
    texts = units["text"].to_pylist() if "text" in units.column_names else []
    if tokenizer_name:
        from hyperscene.transforms.tokens import count_tokens_by_name

        counts = count_tokens_by_name(tokenizer_name, texts)
        label = f"tokenizer {tokenizer_name}"
    else:
        counts = units["token_count"].to_pylist()
        label = f"the store's counts: {store.manifest['model']['name']} tokenizer, no special tokens"
    return UnitTables(dict(zip(ids, texts)) if need_text else {}, dict(zip(ids, counts)), label)


def verified_documents(store: StoreVersion, documents, units: UnitTables, mismatches: list[str],
                       progress: Progress) -> Iterator[tuple[dict, list[str], list[str]]]:
    """(document row, pieces, unit ids) of every document whose rebuilt text matches its sha256; the
    ids of the others go to ``mismatches``."""
    for batch, occurrences in document_batches(store, documents, OCCURRENCE_COLUMNS):
        for doc, pieces, unit_ids in assemble_documents(batch, occurrences, units.text_of):
            progress.add()
            if None in pieces:
                raise VerificationFailed(Errors.E503.format(doc=doc["doc_id"], unit=unit_ids[pieces.index(None)],
                                                            path=store.path, store=store.store))
            if not matches_sha256(doc, doc["prefix"] + "".join(pieces)):
                mismatches.append(doc["doc_id"])
                continue
            yield doc, pieces, unit_ids


def scene_rows(store: StoreVersion, columns: list[str]) -> dict[str, list[dict]]:
    """doc_id -> its scenes (``columns``), sorted by (level, index)."""
    by_doc: dict[str, list[dict]] = {}
    for r in store.read("scenes", columns).to_pylist():
        by_doc.setdefault(r["doc_id"], []).append(r)
    for rows in by_doc.values():
        rows.sort(key=lambda r: (r["level"], r["index"]))
    return by_doc


def at_level(scenes: list[dict], level: int) -> list[dict]:
    """A document's scenes of ``level``, or its root when it has fewer levels (decompress's rule)."""
    depth = max((s["level"] for s in scenes), default=0)
    return [s for s in scenes if s["level"] == min(level, depth)]
