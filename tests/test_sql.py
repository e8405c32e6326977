"""hyperscene sql and connect(): a view per table of the version, results equal to pyarrow's reads of
the same files, every output format, clean errors for bad SQL, --version, and the engine confined to
one read-only statement over the store's files unless --full-access.

The store is the sample corpus, compressed once for this module with the static embedder; tests
that need a second version copy it first.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_CORPUS
from hyperscene.pipelines.cli import main
from hyperscene.pipelines.sql import connect
from hyperscene.schemas import CENTROID_KEYS, DERIVED_COLUMNS, SORT_KEYS
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.store.writer import write_table_file

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from hyperscene.pipelines import compress

    out = tmp_path_factory.mktemp("sql") / "store"
    compress.run([str(SAMPLE_CORPUS), "--out", str(out), "--embedder", "static"])
    return out


def manifest_of(store: Path, version: int = 1) -> dict:
    return json.loads((store / f"v{version:06d}" / "manifest.json").read_text())


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["sql", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_view_per_table_with_the_rows_and_columns_of_its_files(store):
    manifest = manifest_of(store)
    tables = sorted({f["table"] for f in manifest["files"]})
    assert {"documents", "units", "occurrences", "hyperwords", "provenance", "dead_letters", "scenes", "codebooks"} <= set(tables)
    con = connect(str(store))
    assert sorted(r[0] for r in con.sql("show tables").fetchall()) == tables
    for table in tables:
        files = [store / "v000001" / f["path"] for f in manifest["files"] if f["table"] == table]
        assert con.execute(f"select count(*) from {table}").fetchall()[0][0] == sum(pq.read_metadata(p).num_rows for p in files)
        # the stored columns, then those readers derive from them (an occurrence's hyperword) or join to
        # them (the centroid of a hyperword or a code, from the centroids table)
        joined = ["centroid"] if table in CENTROID_KEYS else []
        assert [r[0] for r in con.sql(f"describe {table}").fetchall()] == pq.read_schema(files[0]).names + list(DERIVED_COLUMNS.get(table, {})) + joined


def test_a_view_of_hyperwords_alone_reads_their_centroids(store):
    """From format 6 the centroid is joined from the centroids table's files, which the confined
    connection must allow even when no centroids view is asked for."""
    con = connect(str(store), tables=["hyperwords"])
    [(rows, with_centroid)] = con.execute("select count(*), count(centroid) from hyperwords").fetchall()
    assert rows == with_centroid > 0


def test_every_column_type_reads_back_exactly(store):
    """Lists of float32 (centroids), int32 (semantic ids), int64 (gists) and the rest, value for value."""
    sv = StoreVersion(str(store))
    con = connect(sv)
    for table in ["hyperwords", "scenes", "codebooks", "occurrences", "documents", "units"]:
        # The files are sorted by the table's sort keys: the same order from DuckDB.
        order = ", ".join(f'"{k}"' for k in SORT_KEYS[table])
        ours = con.sql(f"select * from {table} order by {order}").to_arrow_table()
        theirs = sv.read(table)
        assert ours.column_names == theirs.column_names
        for name in theirs.column_names:
            assert ours[name].to_pylist() == theirs[name].to_pylist(), (table, name)


def test_join_query_gives_the_same_numbers_as_pyarrow(store, capsys):
    sv = StoreVersion(str(store))
    units = {u["unit_id"]: u for u in sv.read("units", ["unit_id", "token_count"]).to_pylist()}
    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for o in sv.read("occurrences", ["unit_id", "hyperword"]).to_pylist():
        expected[o["hyperword"]][0] += 1
        expected[o["hyperword"]][1] += units[o["unit_id"]]["token_count"]
    texts = dict(zip(*sv.read("hyperwords", ["hyperword", "representative_text"]).to_pydict().values()))
    query = ("select h.hyperword, h.representative_text, count(*) as occurrences, sum(u.token_count) as tokens "
             "from occurrences o join units u using (unit_id) join hyperwords h on h.hyperword = o.hyperword "
             "group by all order by h.hyperword")
    code, out, err = run(capsys, store, query, "--format", "jsonl")
    assert code == 0 and not err
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["hyperword"]: [r["occurrences"], r["tokens"]] for r in rows} == dict(expected)
    assert all(r["representative_text"] == texts[r["hyperword"]] for r in rows)
    assert sum(r["tokens"] for r in rows) == manifest_of(store)["counts"]["tokens"]


def test_csv_output(store, capsys):
    sv = StoreVersion(str(store))
    expected = sv.read("scenes", ["scene_id", "gist", "parent_scene_id"]).to_pylist()
    code, out, _ = run(capsys, store, "select scene_id, gist, parent_scene_id from scenes order by scene_id", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(expected)
    by_id = {r["scene_id"]: r for r in expected}
    for r in rows:
        assert json.loads(r["gist"]) == by_id[r["scene_id"]]["gist"]
        assert r["parent_scene_id"] == (by_id[r["scene_id"]]["parent_scene_id"] or "")


def test_table_output_keeps_one_line_per_row(store, capsys):
    """Unit texts hold CRLF line breaks: the table shows them escaped, so rows stay one line each."""
    code, out, _ = run(capsys, store, "select unit_id, text, token_count from units where text like '%' || chr(13) || '%' "
                                      "order by unit_id limit 4")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + 4 + 1, out
    assert lines[-1] == "(4 rows)"
    assert all("\\r\\n" in line for line in lines[2:6])
    start = lines[0].index("token_count")
    assert all(line[start:].strip().isdigit() for line in lines[2:6])  # numbers under their header, right-aligned
    assert len({len(line) for line in lines[2:6]}) == 1


def test_table_output_counts_rows_it_does_not_show(store, capsys):
    total = manifest_of(store)["counts"]["units"]
    code, out, _ = run(capsys, store, "select * from occurrences", "--max-rows", "3", "--max-width", "20")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + 3 + 1
    assert lines[-1] == f"({total:,} rows; the first 3 shown, --max-rows 0 shows all)"
    assert max(len(cell.strip()) for line in lines[2:5] for cell in line.split("  ") if cell) <= 20


@pytest.mark.parametrize("query, message", [
    ("selec * from units", "Parser Error"),
    ("select * from no_such_table", "no_such_table does not exist"),
    ("select nope from units", 'column "nope" not found'),
    ("select cast(text as integer) from units", "Conversion Error"),
])
def test_bad_sql_is_a_clean_error(store, capsys, query, message):
    code, out, err = run(capsys, store, query)
    assert code == 2 and not out
    assert err.startswith("hyperscene sql: error: [E608] the query failed: ") and message in err, err
    assert "Traceback" not in err


def test_version_option(store, tmp_path, capsys):
    """Version 2 keeps three documents: the views follow the version asked for, the latest by default."""
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    v2 = copy / "v000002"
    shutil.copytree(copy / "v000001", v2)
    manifest = manifest_of(copy)
    entry = write_table_file(str(v2), "documents", 0, StoreVersion(str(copy)).read("documents").slice(0, 3))
    manifest["files"] = [entry if f["path"] == entry["path"] else f for f in manifest["files"]]
    (v2 / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    count = "select count(*) as n from documents"
    assert run(capsys, copy, count, "--format", "jsonl")[1] == '{"n": 3}\n'
    assert run(capsys, copy, count, "--format", "jsonl", "--version", "1")[1] == f'{{"n": {manifest["counts"]["documents"]}}}\n'
    assert connect(str(copy), version=1).execute(count).fetchall()[0][0] == manifest["counts"]["documents"]
    code, out, err = run(capsys, copy, count, "--version", "5")
    assert code == 2 and "has no version 5 (has: 1, 2)" in err and not out


def test_loaded_tables_equal_the_views(store):
    """load=True (what a gs:// or s3:// store gets) reads the tables into DuckDB: same results."""
    loaded, views = connect(str(store), load=True), connect(str(store))
    tables = sorted({f["table"] for f in manifest_of(store)["files"]})
    assert sorted(r[0] for r in loaded.sql("show tables").fetchall()) == tables
    for table in tables:
        assert loaded.sql(f"describe {table}").fetchall() == views.sql(f"describe {table}").fetchall(), table
        assert loaded.sql(f"select * from {table} order by all").fetchall() == views.sql(f"select * from {table} order by all").fetchall()
    query = "select level, count(*), sum(token_count), max(len(gist)) from scenes group by level order by level"
    assert connect(str(store), load=True, tables=["scenes"]).sql(query).fetchall() == views.sql(query).fetchall()
    with pytest.raises(Exception, match="no table 'nope'"):
        connect(str(store), tables=["nope"])


def test_bad_options(store, capsys):
    code, _, err = run(capsys, store, "select 1", "--max-rows", "-1")
    assert code == 2 and "--max-rows must be 0 (all) or more" in err
    code, _, err = run(capsys, store.parent / "missing", "select 1")
    assert code == 2 and "holds no published store version" in err


# ---------------------------------------------------------------------------------------------------
# Confinement: one read-only statement over the store's files, unless --full-access


def refused(capsys, error: str, *args) -> str:
    """Run hyperscene sql, expect a one-line refusal coded ``error`` that names the way out; the error line."""
    code, out, err = run(capsys, *args)
    assert code == 2 and not out, (code, out, err)
    assert err.startswith(f"hyperscene sql: error: [{error}] ") and "--full-access" in err, err
    assert "Traceback" not in err
    return err


def test_a_file_outside_the_store_is_refused(store, tmp_path, capsys):
    outside = tmp_path / "secret.csv"
    outside.write_text("secret\nhunter2\n")
    for query in [f"select * from read_csv('{outside}')", f"select * from read_text('{outside}')",
                  f"select * from '{outside}'"]:
        err = refused(capsys, "E609", store, query)
        assert "reads only the store's files" in err and "hunter2" not in err, err


def test_copy_is_refused_and_writes_nothing(store, tmp_path, capsys):
    target = tmp_path / "units.csv"
    for query in [f"copy units to '{target}'", f"copy (select * from units) to '{target}' (header)",
                  f"explain analyze copy (select * from units) to '{target}'",
                  f"export database '{tmp_path / 'export'}'"]:
        err = refused(capsys, "E606", store, query)
        assert "refused this COPY statement" in err or "refused this EXPORT statement" in err, err
    assert not target.exists() and not (tmp_path / "export").exists()


def test_a_store_file_cannot_be_overwritten(store, tmp_path, capsys):
    """The views' own files are the ones DuckDB is allowed to open: a write to one is refused too."""
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    target = copy / "v000001" / next(f["path"] for f in manifest_of(copy)["files"] if f["table"] == "documents")
    before = target.read_bytes()
    refused(capsys, "E606", copy, f"explain analyze copy (select 1 as x) to '{target}' (format parquet, use_tmp_file false)")
    refused(capsys, "E606", copy, f"explain (analyze, format json) copy (select 1 as x) to '{target}' (format parquet, use_tmp_file false)")
    assert target.read_bytes() == before


@pytest.mark.parametrize("query, word", [
    ("attach '{tmp}/other.duckdb' as other", "ATTACH"),
    ("install httpfs", "INSTALL"),
    ("load httpfs", "LOAD"),
    ("set enable_external_access = true", "SET"),
    ("reset enable_external_access", "RESET"),
    ("pragma enable_external_access = true", "PRAGMA"),
    ("create table t as select * from units", "CREATE"),
    ("insert into units select * from units", "INSERT"),
    ("call pragma_version()", "CALL"),
])
def test_statements_that_are_not_queries_are_refused(store, tmp_path, capsys, query, word):
    err = refused(capsys, "E606", store, query.format(tmp=tmp_path))
    assert f"refused this {word} statement" in err, err
    assert not (tmp_path / "other.duckdb").exists()


@pytest.mark.parametrize("query", ["select 1; select 2", "select count(*) from units; select count(*) from scenes", "", "-- nothing"])
def test_exactly_one_statement(store, capsys, query):
    err = refused(capsys, "E605", store, query)
    assert "exactly one SQL statement per call" in err, err


@pytest.mark.parametrize("query", [
    "show tables",
    "describe units",
    "summarize scenes",
    "with n as (select level, count(*) as c from scenes group by level) select * from n order by level",
    "from documents select count(*)",
    "explain select count(*) from occurrences",
    "explain analyze select count(*) from occurrences join units using (unit_id)",
    "select 1;",
])
def test_read_only_queries_over_the_store_run(store, capsys, query):
    code, out, err = run(capsys, store, query, "--format", "jsonl")
    assert code == 0 and out and not err, err


def test_connect_cannot_be_unlocked(store, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    outside = tmp_path / "secret.csv"
    outside.write_text("secret\nhunter2\n")
    con = connect(str(store))
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("set enable_external_access = true")
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"select * from read_csv('{outside}')")
    assert con.execute("select count(*) from documents").fetchall()[0][0] == manifest_of(store)["counts"]["documents"]
    assert connect(str(store), full_access=True).execute(f"select * from read_csv('{outside}')").fetchall() == [("hunter2",)]


def test_full_access_runs_the_whole_engine(store, tmp_path, capsys):
    outside = tmp_path / "other.csv"
    outside.write_text("a,b\n1,x\n2,y\n")
    code, out, err = run(capsys, store, f"select * from read_csv('{outside}') order by a", "--format", "jsonl", "--full-access")
    assert code == 0 and not err, err
    assert out == '{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n'
    target = tmp_path / "doc_ids.csv"
    code, _, err = run(capsys, store, f"copy (select doc_id from documents) to '{target}' (header); select 1", "--full-access")
    assert code == 0 and not err, err
    assert len(target.read_text().splitlines()) == 1 + manifest_of(store)["counts"]["documents"]
