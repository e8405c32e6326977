"""The refresh plan, made before any pipeline runs from the documents' sha256 alone
(:func:`plan_refresh`): new ids, changed content (a new revision), unchanged, and missing ids
(deleted with ``--delete-missing``, kept otherwise); and the stored rows of documents it keeps.
Plain Python on Arrow tables, no Beam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh changes, decided from ids and sha256 alone."""

    process: frozenset[str]  # documents to segment and store: new ids, changed content, deleted ones back
    revisions: dict[str, int]  # the revision each processed document gets
    removed: frozenset[str]  # documents whose stored occurrences and scenes leave (changed or deleted)
    deleted: frozenset[str]  # documents marked deleted by this refresh
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0  # absent from the input; deleted only with --delete-missing
    new_dead_letters: int = 0

    @property
    def empty(self) -> bool:
        return not self.process and not self.deleted and not self.new_dead_letters

    def as_dict(self) -> dict:
        return {"new_documents": self.new, "changed_documents": self.changed, "unchanged_documents": self.unchanged,
                "missing_documents": self.missing, "deleted_documents": len(self.deleted),
                "new_dead_letters": self.new_dead_letters}


def plan_refresh(stored: Iterable[dict], incoming: Iterable[tuple[str, str]], delete_missing: bool,
                 stored_dead_letters: Iterable[tuple] = (), incoming_dead_letters: Iterable[tuple] = ()) -> RefreshPlan:
    """``stored``: documents rows (doc_id, sha256, revision, deleted); ``incoming``: (doc_id, sha256)
    of the input, one per id; dead letters as (source, record, reason) keys."""
    stored = {d["doc_id"]: d for d in stored}
    incoming = dict(incoming)
    process, revisions, removed = set(), {}, set()
    new = changed = unchanged = 0
    for doc_id, sha in incoming.items():
        old = stored.get(doc_id)
        if old is None:
            new += 1
            process.add(doc_id)
            revisions[doc_id] = 1
        elif old["deleted"] or old["sha256"] != sha:
            changed += 1
            process.add(doc_id)
            revisions[doc_id] = old["revision"] + 1
            removed.add(doc_id)  # a deleted document has nothing stored left: removing it is a no-op
        else:
            unchanged += 1
    missing = {doc_id for doc_id, d in stored.items() if doc_id not in incoming and not d["deleted"]}
    deleted = missing if delete_missing else set()
    known_dead = set(stored_dead_letters)
    new_dead = len({tuple(k) for k in incoming_dead_letters} - known_dead)
    return RefreshPlan(frozenset(process), revisions, frozenset(removed | deleted), frozenset(deleted),
                       new=new, changed=changed, unchanged=unchanged, missing=len(missing), new_dead_letters=new_dead)


def update_documents(rows: pa.Table, plan: RefreshPlan) -> pa.Table:
    """Stored documents rows for the new version: processed ones leave (their new revision is
    written from the input), deleted ones are flagged."""
    ids = rows.column("doc_id")
    keep = pc.invert(pc.is_in(ids, value_set=pa.array(sorted(plan.process), pa.string())))
    rows = rows.filter(keep)
    if plan.deleted:
        deleted = pc.or_(rows.column("deleted"), pc.is_in(rows.column("doc_id"), value_set=pa.array(sorted(plan.deleted), pa.string())))
        rows = rows.set_column(rows.schema.get_field_index("deleted"), "deleted", deleted)
    return rows


def drop_documents(rows: pa.Table, doc_ids: frozenset[str]) -> pa.Table:
    """Rows (occurrences, scenes) of documents other than ``doc_ids``."""
    if not doc_ids or rows.num_rows == 0:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows.column("doc_id"), value_set=pa.array(sorted(doc_ids), pa.string()))))
