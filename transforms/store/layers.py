"""Which rows of a shared file a version holds.

A refresh lists the ``occurrences`` and ``scenes`` files of earlier versions as they are and writes
files only for the documents it processed. The rows of a document's old revision (a changed
document, or one marked deleted) then stay in the earlier files, and each version reads past them:

- a document's rows are those of its current revision, which version ``added_in_version`` wrote
  (the ``documents`` table);
- a file of a per-document table holds the revisions written by versions ``lo`` to ``hi``, its
  manifest entry's ``"documents": [lo, hi]``; without the field, every revision current in the
  version whose folder holds it (``[1, that version]``): what a compress, a retrain, a compaction
  and every version before format 4 write;
- so a version keeps a row of document ``d`` from a file ``[lo, hi]`` when ``d`` is not deleted and
  ``lo <= added_in_version(d) <= hi``.

Rows are never moved between revisions: a changed document's new rows are in the new version's
files, its old rows in older files whose range ends before its new ``added_in_version``.
"""

from __future__ import annotations

# Tables holding rows of each document revision. Every other table's files hold only rows of the
# versions that list them.
PER_DOCUMENT_TABLES = ("occurrences", "scenes")


def range_problem(entry: dict, held: int) -> str | None:
    """What is wrong with an entry's ``documents`` range (the file lying in version ``held``), or None."""
    value = entry.get("documents")
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 1 <= value[0] <= value[1] <= held and entry.get("table") in PER_DOCUMENT_TABLES):
        return f"gives the file {entry.get('path')!r} a documents range {value!r}, which is not [first, last] version up to {held}"
    return None


def documents_range(entry: dict, held: int) -> tuple[int, int]:
    """The versions whose document revisions an entry's file holds (see the module's rule)."""
    value = entry.get("documents")
    return (value[0], value[1]) if value is not None else (1, held)


def live_ids(revisions: dict[str, int], first: int, last: int) -> list[str]:
    """Of ``revisions`` (doc_id -> added_in_version, deleted documents left out), the documents whose
    current revision a file ``[first, last]`` holds."""
    return sorted(d for d, v in revisions.items() if first <= v <= last)


def keep_live(table, ids: list[str]):
    """The rows of ``table`` (with a ``doc_id`` column) whose document is in ``ids``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("doc_id"), value_set=pa.array(ids, pa.string())))


# Units work by the version, not by the document: a refresh writes rows only for the units it adds
# and those whose occurrence_count it changes, and a unit's row in a version is the one in the file
# of the latest version that holds one (``held``: the version whose folder holds the file).
HELD = "_held"

# Every table a version may share files of that hold rows it does not.
LAYERED_TABLES = PER_DOCUMENT_TABLES + ("units",)


def tag_held(table, held: int):
    """A units table read from a file of version ``held``, tagged so that :func:`latest_units` can
    keep each unit's newest row."""
    import numpy as np
    import pyarrow as pa

    return table.append_column(HELD, pa.array(np.full(table.num_rows, held, np.int32)))


def latest_units(tables: list):
    """Units rows, one table or more (tagged by :func:`tag_held`, or not: then as they are), each
    unit's row from the latest version that holds one, without the tag."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if HELD not in table.column_names:
        return table
    table = table.sort_by([("unit_id", "ascending"), (HELD, "descending")])
    ids = table.column("unit_id").combine_chunks()
    first = np.ones(table.num_rows, dtype=bool)  # the first row of each unit id: its newest
    if table.num_rows > 1:
        first[1:] = pc.not_equal(ids.slice(1), ids.slice(0, table.num_rows - 1)).to_numpy(zero_copy_only=False)
    table = table.filter(pa.array(first))
    return table.drop_columns([HELD])


# The same two rules in SQL (DuckDB), for views over the files: each file comes as a relation to
# select from (``read_parquet(['path'])``, or a query over it).


def live_rows_sql(files: list[tuple[str, int, int]], documents: str) -> str:
    """A query of a per-document table's live rows: each file (relation, first, last) read for the
    documents whose current revision it holds, by the ``documents`` relation."""
    live = f"select doc_id, added_in_version from {documents} where not deleted"
    return " union all by name ".join(
        f"select * from {relation} where doc_id in "
        f"(select doc_id from ({live}) where added_in_version between {first} and {last})" for relation, first, last in files)


def latest_units_sql(files: list[tuple[str, int]]) -> str:
    """A query of the units table from files (relation, held) of several versions: each unit's newest row."""
    tagged = " union all by name ".join(f"select *, {held} as {HELD} from {relation}" for relation, held in files)
    return f"select * exclude ({HELD}) from ({tagged}) qualify row_number() over (partition by unit_id order by {HELD} desc) = 1"
