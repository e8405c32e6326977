"""``hyperscene sql``: query a store version's tables by name with SQL, through DuckDB.

Each table the version's manifest lists becomes a DuckDB view of the same name (``documents``,
``units``, ``occurrences``, ``hyperwords``, ``provenance``, ``dead_letters``, ``scenes``,
``codebooks``, and any newer table) over exactly the Parquet files the manifest lists for it, so
a query sees one consistent version, never a half-written one. Every column type of the store reads
in DuckDB as its natural type (``centroid`` as ``FLOAT[]``, ``semantic_id`` as ``INTEGER[]``,
``raw`` as ``BLOB``). Unit ids are BIGINT; two functions go with them: ``unit_id(text)`` is the id a
text has (``select * from units where unit_id = unit_id('Hello.')``) and ``unit_hex(unit_id)`` the
id as 16 hex digits.

From Python (a notebook)::

    from hyperscene.pipelines.sql import connect
    con = connect("store")                 # the latest version; connect("store", version=2) for another
    con.sql("select level, count(*) from scenes group by level order by level").df()

A local store's views read the Parquet files where they are, when a query runs. A store on
``gs://`` or ``s3://`` is read through Beam's FileSystems (as every other subcommand reads it) and
its tables are loaded into memory first: for a large remote store, copy the version's folder
locally, or query only the tables you need (``connect(store, tables=[...])``).

By default the engine is confined to the store: DuckDB's external access is off (it reads only
the version's Parquet files, and nothing on the network), extensions are neither installed nor
loaded, and the configuration is locked so a query cannot lift this. ``hyperscene sql`` also runs
exactly one read-only statement (a query, ``describe``, ``show``, ``explain``) and refuses the rest
(``copy``, ``attach``, ``install``, ``set``, ``create``, several statements, ...) with an [E605],
[E606] or [E607] error.

.. warning::
   ``hyperscene sql --full-access`` (``connect(..., full_access=True)`` from Python) lifts all of
   this: several statements per call, any file the user can read or write (``read_csv``,
   ``copy ... to``, ``attach``), the network, and extensions. Use it only with queries you trust.

DuckDB is an optional dependency: ``pip install 'hyperscene[sql]'``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
import decimal
import json
import os
import re
import sys
import unicodedata

from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.cliutil import human
from hyperscene.schemas import CENTROID_KEYS, DERIVED_COLUMNS, TABLES, table_schema
from hyperscene.transforms.errors import Errors, HypersceneError, InvalidOption
from hyperscene.transforms.store.layers import latest_units_sql, live_rows_sql
from hyperscene.transforms.store.reader import StoreVersion, entry_version
from hyperscene.transforms.unit_ids import ALL_ID_COLUMNS, hex_to_id_sql, unit_hex, unit_id

FORMATS = ("table", "csv", "jsonl")
DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_WIDTH = 60
BATCH_ROWS = 10_000
_NAME = re.compile(r"[a-z_][a-z0-9_]*$")


class QueryError(InvalidOption):
    """DuckDB refused or failed the query: its message, which points at the offending part."""


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise HypersceneError(Errors.E601) from None
    return duckdb


def table_names(store: StoreVersion) -> list[str]:
    """The tables the version's manifest lists files for, in manifest order of first appearance."""
    return [t for t in dict.fromkeys(f["table"] for f in store.manifest["files"]) if _NAME.match(t)]


def _sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _widen(t):
    import pyarrow as pa

    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_list(t):
        return pa.list_(_widen(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_widen(t.value_type))
    return t


# schemas.DERIVED_COLUMNS in DuckDB
DERIVED_SQL = {("occurrences", "hyperword"): "semantic_id[-1]"}


def _relation(path: str, table: str) -> str:
    """A file of ``table`` as a relation in today's format, with the derived columns readers give
    (schemas.DERIVED_COLUMNS): a file of format 4 or earlier has its hex unit ids as int64 and no
    column that today's schema lacks (scenes.centroid)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file_schema = pq.read_schema(path)
    today = table_schema(table, file_schema.names).names if table in TABLES else file_schema.names
    dropped = [c for c in file_schema.names if c not in today]
    replaced = [c for c in file_schema.names if c in ALL_ID_COLUMNS and pa.types.is_string(file_schema.field(c).type)]
    derived = [f"{DERIVED_SQL[(table, c)]} as {c}" for c in DERIVED_COLUMNS.get(table, {})]
    relation = f"read_parquet([{_sql_string(path)}])"
    if not dropped and not replaced and not derived:
        return relation
    exclude = f" exclude ({', '.join(dropped)})" if dropped else ""
    replace = f" replace ({', '.join(f'{hex_to_id_sql(c)} as {c}' for c in replaced)})" if replaced else ""
    return f"(select *{exclude}{replace}{''.join(', ' + d for d in derived)} from {relation})"


def _without_float16(table):
    """DuckDB takes no float16 from Arrow (it does from Parquet, as FLOAT): widen to float32, which
    is also the type a view over the files shows."""
    import pyarrow as pa

    schema = pa.schema([f.with_type(_widen(f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


def connect(store: str | StoreVersion, version: int | None = None, *, tables: list[str] | None = None,
            load: bool | None = None, full_access: bool = False):
    """A new in-memory DuckDB connection with one view per table of the store version (the latest
    when ``version`` is None).

    ``tables`` limits the views to these names. ``load`` reads the tables into memory (Arrow,
    through Beam's FileSystems) instead of making views over the files; None chooses it for stores
    that are not on the local disk, which DuckDB cannot read by their Beam path.

    The connection reads only the store's files, with no network, no extensions and a locked
    configuration, unless ``full_access`` (see the module's warning).
    """
    duckdb = _duckdb()
    sv = store if isinstance(store, StoreVersion) else StoreVersion(store, version)
    names = table_names(sv)
    if tables is not None:
        unknown = sorted(set(tables) - set(names))
        if unknown:
            raise InvalidOption(Errors.E604.format(table=unknown[0], version=sv.version, store=sv.store, tables=", ".join(names)))
        names = [n for n in names if n in set(tables)]
    local = FileSystems.get_scheme(sv.path) is None
    if load is None:
        load = not local
    con = duckdb.connect(":memory:")
    paths: list[str] = []
    for name in names:
        if load:
            # Registered Arrow tables live only as long as the Python object: keep it on the view
            # side by materialising into a DuckDB table.
            con.register(f"_hyperscene_{name}", _without_float16(sv.read(name)))
            con.execute(f'create table "{name}" as select * from "_hyperscene_{name}"')
            con.unregister(f"_hyperscene_{name}")
        elif sv.layered(name):
            def relation(entry, table=name):
                return _relation(os.path.abspath(sv.file_path(entry)), table)

            if name == "units":
                query = latest_units_sql([(relation(e), entry_version(e, sv.version)) for e in sv.files(name)])
            else:
                documents = " union all by name ".join(f"select * from {relation(e, 'documents')}" for e in sv.files("documents"))
                query = live_rows_sql([(relation(e), *sv.documents_range(e)) for e in sv.files(name)], f"({documents})")
            con.execute(f'create view "{name}" as {query}')
            paths += [os.path.abspath(sv.file_path(f)) for t in (name, "documents") for f in sv.files(t)]
        else:
            files = [os.path.abspath(sv.file_path(f)) for f in sv.files(name)]
            con.execute(f'create view "{name}" as {_with_centroid(sv, name, _union(files, name))}')
            paths += files
            if name in CENTROID_KEYS:  # the view reads the centroids' files too
                paths += [os.path.abspath(sv.file_path(e)) for e in sv.files("centroids")]
    _add_id_functions(con)
    if not full_access:
        _confine(con, paths)
    return con


def _union(paths: list[str], table: str) -> str:
    """Files of one table as one relation."""
    return " union all by name ".join(f"select * from {_relation(p, table)}" for p in paths)


def _with_centroid(sv: StoreVersion, name: str, query: str) -> str:
    """From format 6 the centroids of hyperwords and codebooks are in the centroids table: their
    views get a centroid column from it, as StoreVersion.read gives them."""
    if name not in CENTROID_KEYS or not sv.files("centroids"):
        return query
    centroids = _union([os.path.abspath(sv.file_path(e)) for e in sv.files("centroids")], "centroids")
    on = {"hyperwords": "c.level = 0 and c.code = t.hyperword", "codebooks": "c.level = t.level and c.code = t.code"}[name]
    return f"select t.*, c.centroid from ({query}) t left join ({centroids}) c on {on}"


def _add_id_functions(con) -> None:
    """unit_id(text): the id a text has in the store; unit_hex(unit_id): an id as 16 hex digits."""
    con.create_function("unit_id", unit_id, ["VARCHAR"], "BIGINT", side_effects=False)
    con.create_function("unit_hex", unit_hex, ["BIGINT"], "VARCHAR", side_effects=False)


def _confine(con, paths: list[str]) -> None:
    # A view reads its files when a query runs, so they stay allowed (DuckDB takes allowed_paths only
    # while external access is on). DuckDB would let a COPY overwrite them: hyperscene sql refuses
    # every statement but a read-only query (check_query).
    con.execute(f"set allowed_paths = [{', '.join(_sql_string(p) for p in paths)}]")
    con.execute("set enable_external_access = false")
    con.execute("set autoinstall_known_extensions = false")
    con.execute("set autoload_known_extensions = false")
    con.execute("set lock_configuration = true")  # last: no query can undo the settings above


def check_query(query: str) -> None:
    """Refuse (InvalidOption) anything but exactly one read-only statement, as DuckDB's own parser
    reads the query."""
    duckdb = _duckdb()
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise QueryError(Errors.E608.format(error=e)) from None
    if len(statements) != 1:
        raise InvalidOption(Errors.E605.format(count=len(statements)))
    statement = _wrapped(duckdb, statements[0])
    kind = statement.type.name
    # describe, show and summarize parse as SELECT. A PIVOT that must look up its column values is
    # MULTI, which also hides "copy (pivot ...) to", so it is refused with the rest.
    if kind != "SELECT":
        if kind == "MULTI":
            raise InvalidOption(Errors.E607)
        # The statement's first word: INSTALL is of type LOAD, USE of type SET.
        first = next((re.match(r"\w*", statement.query[o:]).group() for o, t in duckdb.tokenize(statement.query)
                      if t != duckdb.token_type.comment), "") or kind
        raise InvalidOption(Errors.E606.format(statement=first.upper()))


def _wrapped(duckdb, statement):
    """The statement, or for EXPLAIN (which EXPLAIN ANALYZE runs) the statement it wraps: the first
    suffix, from a token after EXPLAIN on, that parses (ANALYZE or an option list before it does
    not parse alone)."""
    if statement.type.name != "EXPLAIN":
        return statement
    text = statement.query
    for offset, _ in duckdb.tokenize(text)[1:]:
        try:
            inner = duckdb.extract_statements(text[offset:])
        except duckdb.Error:
            continue
        return _wrapped(duckdb, inner[0]) if len(inner) == 1 else statement
    return statement


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene sql",
        description="Run one SQL query (DuckDB's dialect) over a store version, whose tables are views by name: "
                    "documents, units, occurrences, hyperwords, provenance, dead_letters, scenes, codebooks. "
                    "'show tables' lists them, 'describe units' shows a table's columns.",
        epilog="example: hyperscene sql store \"select h.hyperword, h.representative_text, count(*) as n from occurrences o "
               "join hyperwords h using (hyperword) group by all order by n desc limit 5\"")
    p.add_argument("store", help="store directory")
    p.add_argument("query", help="the SQL query (quote it for the shell)")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table: aligned columns for reading (default); csv: a header line, then one line per row; jsonl: "
                        "one JSON object per row. In csv and jsonl, lists are JSON arrays and binary values base64")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"rows printed in table format, the rest counted (default: {DEFAULT_MAX_ROWS}; 0: all); csv and "
                        "jsonl print every row")
    p.add_argument("--max-width", type=int, default=DEFAULT_MAX_WIDTH, metavar="N",
                   help=f"characters per cell in table format, longer values cut with … (default: {DEFAULT_MAX_WIDTH}; 0: no cut)")
    p.add_argument("--full-access", action="store_true",
                   help="WARNING: run the whole DuckDB engine. Without it, the query is exactly one read-only statement "
                        "that reads only the store's files; with it, several statements, reading and writing any file "
                        "you can (read_csv, copy ... to, attach), the network and extensions. Only for queries you trust")
    return p


# ---------------------------------------------------------------------------------------------------
# Values


def _plain(value):
    """A result value as JSON-ready Python: lists and structs kept, binary as base64, the rest of
    DuckDB's types (decimals, timestamps, intervals) as their text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _shown(value, width: int) -> str:
    """A value for the aligned table: one line (control characters escaped, so rows stay aligned),
    NULL for null, floats to 6 significant digits, cut to ``width``."""
    if value is None:
        text = "NULL"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                       for c in value)
    elif isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value))
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_shown(v, 0) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_shown(v, 0)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if not width or len(text) <= width else text[: max(width - 1, 1)] + "…"


def _numeric(arrow_type) -> bool:
    import pyarrow.types as t

    return t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type)


def render_table(names: list[str], types: list, rows: list[tuple], width: int) -> list[str]:
    """Aligned text lines: header, a rule, one line per row; numbers right-aligned."""
    cells = [[_shown(v, width) for v in row] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    right = [_numeric(t) for t in types]

    def line(values: list[str], header: bool = False) -> str:
        return "  ".join(v.rjust(w) if right[i] and not header else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return [line(names, header=True), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]


# ---------------------------------------------------------------------------------------------------
# Running a query


def _result(con, query: str):
    duckdb = _duckdb()
    try:
        relation = con.sql(query)
        if relation is None:  # DuckDB 1.x: a statement that returns nothing
            return None
        # to_arrow_reader since DuckDB 2.0; fetch_arrow_reader before (an alias since).
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        return reader(BATCH_ROWS)
    except duckdb.Error as e:
        raise _query_error(duckdb, e) from None


def _query_error(duckdb, e) -> QueryError:
    if isinstance(e, duckdb.PermissionException):
        return QueryError(Errors.E609.format(error=e))
    return QueryError(Errors.E608.format(error=e))


def _batches(reader):
    """The reader's batches; a DuckDB error raised while rows are produced (a failed cast, say)
    becomes a QueryError like one raised while planning."""
    duckdb = _duckdb()
    try:
        yield from reader
    except duckdb.Error as e:
        raise _query_error(duckdb, e) from None


def execute(con, query: str, fmt: str = "table", out=None, max_rows: int = DEFAULT_MAX_ROWS,
            max_width: int = DEFAULT_MAX_WIDTH) -> int:
    """Run ``query`` on ``con`` and write its result to ``out`` (standard output) in ``fmt``;
    returns the number of result rows."""
    out = out or sys.stdout
    reader = _result(con, query)
    if reader is None:
        return 0
    names = list(reader.schema.names)
    count = 0
    if fmt == "table":
        kept: list[tuple] = []
        for batch in _batches(reader):
            if not max_rows or len(kept) < max_rows:
                room = batch.num_rows if not max_rows else max_rows - len(kept)
                kept.extend(_rows(batch.slice(0, room)))
            count += batch.num_rows
        for line in render_table(names, [f.type for f in reader.schema], kept, max_width):
            out.write(line + "\n")
        more = f"; the first {len(kept):,} shown, --max-rows 0 shows all" if len(kept) < count else ""
        out.write(f"({human(count)} row{'s' if count != 1 else ''}{more})\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for batch in _batches(reader):
            for row in _rows(batch):
                writer.writerow(["" if v is None else json.dumps(_plain(v), ensure_ascii=False)
                                 if isinstance(v, (list, tuple, dict)) else _plain(v) for v in row])
            count += batch.num_rows
    else:
        for batch in _batches(reader):
            for row in _rows(batch):
                out.write(json.dumps(dict(zip(names, map(_plain, row))), ensure_ascii=False) + "\n")
            count += batch.num_rows
    return count


def _rows(batch) -> list[tuple]:
    """A batch's rows as tuples in column order (to_pylist would merge columns of the same name)."""
    columns = [c.to_pylist() for c in batch.columns]
    return list(zip(*columns))


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    if args.max_rows < 0:
        raise InvalidOption(Errors.E602.format(value=args.max_rows))
    if args.max_width < 0 or 0 < args.max_width < 4:
        raise InvalidOption(Errors.E603.format(value=args.max_width))
    if not args.full_access:
        check_query(args.query)
    store = StoreVersion(args.store, args.version)
    store.check_files()  # a missing or cut file is named here, not as a DuckDB error mid-query
    tables = None
    if FileSystems.get_scheme(store.path) is not None:
        # Loading a remote table costs a full read: load only those the query names.
        tables = [t for t in table_names(store) if re.search(rf"\b{t}\b", args.query, re.IGNORECASE)]
    con = connect(store, tables=tables, full_access=args.full_access)
    try:
        rows = execute(con, args.query, args.format, sys.stdout, args.max_rows, args.max_width)
    finally:
        con.close()
    sys.stdout.flush()
    return {"rows": rows, "version": store.version}
