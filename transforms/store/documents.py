"""Documents rebuilt from a version's tables: a document is its ``prefix`` followed, for each
occurrence in position order, by the unit's text and the occurrence's separator; it is trusted
only once it matches the sha256 of its original bytes; and scenes' gists as text. Shared by
decompress, export, encode, verify, inspect and report."""

from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

from hyperscene.transforms.errors import Errors, StoreError, VerificationFailed
from hyperscene.transforms.store.reader import StoreVersion


# The columns that rebuilding documents reads (and every column of documents).
OCCURRENCE_COLUMNS = ["doc_id", "position", "unit_id", "separator"]
UNIT_COLUMNS = ["unit_id", "text"]


def read_table(store: StoreVersion, table: str, columns: list[str], where: dict[str, Iterable] | None = None):
    """Some columns of one table, keeping only rows whose value of each ``where`` column is in its set.

    Rows are filtered while each file is read, so a document's rows do not need the whole table in
    memory; without ``where`` this is ``store.read(table, columns)``.
    """
    if not where:
        return store.read(table, columns)
    import pyarrow as pa
    import pyarrow.compute as pc

    from hyperscene.schemas import TABLES

    schema = TABLES[table]
    condition = None
    for column, values in where.items():
        test = pc.field(column).isin(pa.array(sorted(set(values)), type=schema.field(column).type))
        condition = test if condition is None else condition & test
    return store.read(table, columns, filters=condition)


def check_documents(store: StoreVersion, doc_ids: Iterable[str]):
    """The documents rows of these ids; StoreError naming the first id the store lacks."""
    wanted = set(doc_ids)
    documents = read_table(store, "documents", None, {"doc_id": wanted}) if wanted else store.read("documents").slice(0, 0)
    missing = wanted - set(documents["doc_id"].to_pylist())
    if missing:
        raise StoreError(Errors.E420.format(doc=sorted(missing)[0], path=store.path, store=store.store))
    if "deleted" in documents.column_names:
        for doc in documents.filter(documents["deleted"]).to_pylist():
            raise StoreError(Errors.E421.format(doc=doc["doc_id"], version=store.version, revision=doc["revision"],
                                               added=doc["added_in_version"]))
    return documents


def document_pieces(store: StoreVersion, doc_ids: list[str] | None = None) -> Iterator[tuple[dict, list[str]]]:
    """(document row, [text + separator of each unit, in position order]) for each document, in
    doc_id order. The document is its ``prefix`` followed by the pieces; not yet verified."""
    if doc_ids is not None:
        documents = check_documents(store, doc_ids)
        occurrences = read_table(store, "occurrences", OCCURRENCE_COLUMNS, {"doc_id": doc_ids})
        units = read_table(store, "units", UNIT_COLUMNS, {"unit_id": occurrences["unit_id"].to_pylist()}) if occurrences.num_rows else None
    else:
        documents = store.read("documents")
        occurrences = store.read("occurrences", OCCURRENCE_COLUMNS)
        units = store.read("units", UNIT_COLUMNS)
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist())) if units is not None else {}
    for doc, pieces, unit_ids in assemble_documents(documents, occurrences, text_of):
        if None in pieces:
            raise VerificationFailed(Errors.E503.format(doc=doc["doc_id"], unit=unit_ids[pieces.index(None)], path=store.path,
                                                        store=store.store))
        yield doc, pieces


def assemble_documents(documents, occurrences, text_of: dict[str, str]) -> Iterator[tuple[dict, list[str | None], list[str]]]:
    """The core of rebuilding documents, shared by decompress and verify: from the documents table,
    the occurrences (:data:`OCCURRENCE_COLUMNS`) of those documents and unit id -> text, yield
    (document row, [text + separator of each unit, in position order], [its unit ids]) for each
    document, in doc_id order. A unit missing from ``text_of`` gives None for its piece;
    occurrences of a doc_id that ``documents`` lacks are skipped, and so are deleted documents."""
    occurrences = occurrences.sort_by([("doc_id", "ascending"), ("position", "ascending")])
    occ_docs = occurrences["doc_id"].to_pylist()
    occ_units = occurrences["unit_id"].to_pylist()
    occ_seps = occurrences["separator"].to_pylist()

    i, n = 0, len(occ_docs)
    for doc in documents.sort_by("doc_id").to_pylist():
        if doc.get("deleted"):  # deleted by a refresh: earlier versions hold its text
            continue
        doc_id = doc["doc_id"]
        while i < n and occ_docs[i] < doc_id:  # no such document: Arrow's UTF-8 order is Python's str order
            i += 1
        start = i
        while i < n and occ_docs[i] == doc_id:
            i += 1
        unit_ids = occ_units[start:i]
        pieces = [None if (t := text_of.get(u)) is None else t + sep for u, sep in zip(unit_ids, occ_seps[start:i])]
        yield doc, pieces, unit_ids


def reassemble(store: StoreVersion, doc_ids: list[str] | None = None) -> Iterator[tuple[dict, str]]:
    """(document row, text) for each document, in doc_id order. Texts are not yet verified."""
    for doc, pieces in document_pieces(store, doc_ids):
        yield doc, doc["prefix"] + "".join(pieces)


def matches_sha256(doc: dict, text: str) -> bool:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == doc["sha256"]


def gist_texts(store: StoreVersion, scenes: list[dict], whole_store: bool = False) -> dict[tuple[str, int], str]:
    """(doc_id, position) -> unit text, for every gist position of these scenes (``whole_store``:
    they come from every document, so reading is not filtered by document)."""
    import pyarrow as pa

    wanted = sorted({(s["doc_id"], p) for s in scenes for p in s["gist"]})
    if not wanted:
        return {}
    docs = sorted({d for d, _ in wanted})
    occurrences = read_table(store, "occurrences", ["doc_id", "position", "unit_id"], None if whole_store else {"doc_id": docs})
    keys = pa.table({"doc_id": pa.array([d for d, _ in wanted], pa.string()),
                     "position": pa.array([p for _, p in wanted], pa.int64())})
    occurrences = occurrences.join(keys, keys=["doc_id", "position"], join_type="inner")
    units = read_table(store, "units", ["unit_id", "text"], {"unit_id": occurrences["unit_id"].to_pylist()})
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    return {(d, p): text_of[u] for d, p, u in zip(occurrences["doc_id"].to_pylist(), occurrences["position"].to_pylist(),
                                                   occurrences["unit_id"].to_pylist())}


def gist_text(texts: list[str]) -> str:
    """Unit texts as one readable line: each unit's whitespace runs as one space, units joined by one space."""
    return " ".join(" ".join(t.split()) for t in texts)
