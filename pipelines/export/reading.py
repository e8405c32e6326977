"""A store version read for an export: live documents in doc_id order with their occurrences in
batches (in doc_id order or any other), unit texts and token counts, documents rebuilt and checked
against their sha256, the novelty order, and scenes by document and level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hyperscene.transforms import export as ex
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


def doc_spans(doc_ids) -> dict[str, tuple[int, int]]:
    """doc_id -> (start, end) of its rows, for an Arrow column of doc_ids with each document's rows
    together."""
    import pyarrow.compute as pc

    span: dict[str, tuple[int, int]] = {}
    if len(doc_ids):
        column = doc_ids.combine_chunks() if hasattr(doc_ids, "combine_chunks") else doc_ids
        runs = pc.run_end_encode(column.cast("string"))
        ends = runs.run_ends.to_pylist()
        for doc_id, start, end in zip(runs.values.to_pylist(), [0, *ends[:-1]], ends):
            span[doc_id] = (start, end)
    return span


class Occurrences:
    """The occurrences of a store version with ``columns`` (``doc_id`` among them), read once and
    sorted by (doc_id, position), handed out by batches of documents in any order: an export that
    walks the documents more than once, or not in doc_id order, reads them once."""

    def __init__(self, store: StoreVersion, columns: list[str]):
        self.table = store.read("occurrences", columns).sort_by([("doc_id", "ascending"), ("position", "ascending")])
        self._span = doc_spans(self.table["doc_id"])

    def batches(self, documents) -> Iterator[tuple[object, object]]:
        """(documents rows, their occurrences) in batches of :data:`BATCH_DOCUMENTS`, in the order of
        ``documents``' rows. Within a batch in doc_id order the occurrences are one slice of the
        table (rows of documents not listed may lie between); otherwise they are exactly the batch's
        documents' rows, in the batch's order. Each document's rows are in position order."""
        import numpy as np
        import pyarrow as pa

        for first in range(0, documents.num_rows, BATCH_DOCUMENTS):
            batch = documents.slice(first, BATCH_DOCUMENTS)
            ids = batch["doc_id"].to_pylist()
            spans = [self._span[d] for d in ids if d in self._span]
            if not spans:
                yield batch, self.table.slice(0, 0)
            elif all(a < b for a, b in zip(ids, ids[1:])):  # doc_id order: Arrow's UTF-8 order is Python's str order
                start, end = spans[0][0], spans[-1][1]
                yield batch, self.table.slice(start, end - start)
            else:
                rows = np.concatenate([np.arange(start, end, dtype=np.int64) for start, end in spans])
                yield batch, self.table.take(pa.array(rows))


def document_batches(store: StoreVersion, documents, columns: list[str]) -> Iterator[tuple[object, object]]:
    """(documents rows, their occurrences) in batches of :data:`BATCH_DOCUMENTS`, in the order of
    ``documents``' rows (doc_id order for :func:`live_documents`); occurrences with ``columns``, see
    :meth:`Occurrences.batches`."""
    return Occurrences(store, columns).batches(documents)


def take_documents(documents, doc_ids) -> object:
    """The rows of ``documents`` whose doc_id is in ``doc_ids``, in their order in ``documents``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return documents.filter(pc.is_in(documents["doc_id"], value_set=pa.array(sorted(doc_ids), pa.string())))


def novelty_ordered(documents, occurrences: Occurrences):
    """``documents`` (in doc_id order) reordered by novelty (:func:`export.document_novelty` of the
    occurrences' hyperwords), highest first, ties by doc_id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    doc_ids = documents["doc_id"].to_pylist()
    table = occurrences.table
    index = pc.fill_null(pc.index_in(table["doc_id"], value_set=pa.array(doc_ids, pa.string())), -1)
    novelty = ex.document_novelty(index.to_numpy(), table["hyperword"].to_numpy(), len(doc_ids))
    return documents.take(pa.array(ex.novelty_order(doc_ids, novelty), pa.int64()))


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


def verified_documents(store: StoreVersion, documents, units: UnitTables, mismatches: list[str], progress: Progress,
                       occurrences: Occurrences | None = None) -> Iterator[tuple[dict, list[str], list[str]]]:
    """(document row, pieces, unit ids) of every document whose rebuilt text matches its sha256, in
    the order of ``documents``' rows; the ids of the others go to ``mismatches`` (once each, however
    often they are walked). ``occurrences``: read already, with :data:`OCCURRENCE_COLUMNS`."""
    occurrences = occurrences or Occurrences(store, OCCURRENCE_COLUMNS)
    for batch, rows in occurrences.batches(documents):
        assembled = assemble_documents(batch, rows, units.text_of)  # in doc_id order
        ids = batch["doc_id"].to_pylist()
        if any(a > b for a, b in zip(ids, ids[1:])):  # another order: one batch held, put in its order
            by_id = {doc["doc_id"]: (doc, pieces, unit_ids) for doc, pieces, unit_ids in assembled}
            assembled = (by_id[d] for d in ids if d in by_id)
        for doc, pieces, unit_ids in assembled:
            progress.add()
            if checked_text(store, doc, pieces, unit_ids, mismatches) is not None:
                yield doc, pieces, unit_ids


def checked_text(store: StoreVersion, doc: dict, pieces: list[str | None], unit_ids: list, mismatches: list[str]) -> str | None:
    """A document's rebuilt text, or None when it does not match its sha256 (its id then goes to
    ``mismatches``, once); a unit missing from the store stops the export."""
    if None in pieces:
        raise VerificationFailed(Errors.E503.format(doc=doc["doc_id"], unit=unit_ids[pieces.index(None)],
                                                    path=store.path, store=store.store))
    text = doc["prefix"] + "".join(pieces)
    if matches_sha256(doc, text):
        return text
    if doc["doc_id"] not in mismatches:
        mismatches.append(doc["doc_id"])
    return None


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
