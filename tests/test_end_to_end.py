"""Compress real text, decompress it, and compare byte for byte; plus the CLI's error behaviour."""

import gzip
import hashlib
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import (RU_CORPUS, SAMPLE_CORPUS, data_files, files_under, reseal, spill_everything, spill_nothing,
                      units_with_alice_renamed)
from hyperscene.pipelines import compress, decompress
from hyperscene.pipelines.cli import main
from hyperscene.pipelines.cliutil import human
from hyperscene.schemas import TABLES, VECTOR_SCHEMAS, table_schema
from hyperscene.transforms.store.reader import StoreVersion


def test_sample_corpus_round_trips_byte_for_byte(sample_store, tmp_path):
    out = tmp_path / "restored"
    result = decompress.run([str(sample_store), "--out", str(out)])
    restored = files_under(out)
    original = files_under(SAMPLE_CORPUS)
    for name in ("alice-in-wonderland.txt", "sign-of-the-four.md"):
        assert restored[name] == original[name]
    assert restored["origin-of-species.txt"] == gzip.decompress(original["origin-of-species.txt.gz"])
    records = [json.loads(line) for line in original["great-expectations.jsonl"].decode().splitlines()]
    assert [json.loads(line)["text"] for line in restored["great-expectations.jsonl"].decode().splitlines()] == [r["text"] for r in records]
    assert result["documents"] == 3 + len(records)


def test_russian_round_trip_is_byte_exact_and_deterministic(tmp_path):
    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        compress.run([str(RU_CORPUS), "--out", str(store), "--lang", "ru"])
    decompress.run([str(stores[0]), "--out", str(tmp_path / "restored")])
    assert files_under(tmp_path / "restored") == files_under(RU_CORPUS)
    checksums = [{f["path"]: f["sha256"] for f in StoreVersion(str(s)).manifest["files"]} for s in stores]
    assert checksums[0] == checksums[1]


def test_leftovers_of_a_crashed_run_are_cleared_and_no_scratch_stays(tmp_path):
    store = tmp_path / "store"
    for leftover in (store / "v000001" / "units" / "part-00000.parquet", store / "_work" / "v000001" / "vectors" / "vectors-000000.npy"):
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"from a run that was killed")
    compress.run([str(RU_CORPUS), "--out", str(store), "--lang", "ru", "--model", "minilm"])  # any model: the fast one
    assert sorted(p.name for p in store.iterdir()) == ["v000001"]  # vectors were spilled under _work, then removed
    decompress.run([str(store), "--out", str(tmp_path / "restored")])
    assert files_under(tmp_path / "restored") == files_under(RU_CORPUS)


def test_store_tables_match_schemas_and_checksums(sample_store):
    store = StoreVersion(str(sample_store))
    for entry in store.manifest["files"]:
        path = Path(store.path) / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        meta = pq.ParquetFile(path)
        assert meta.schema_arrow == table_schema(entry["table"], meta.schema_arrow.names)
        assert meta.schema_arrow == (VECTOR_SCHEMAS["pq"] if entry["table"] == "vectors" else TABLES[entry["table"]])  # pq: the default
        assert meta.metadata.num_rows == entry["rows"]
        assert meta.metadata.row_group(0).column(0).compression == "ZSTD"
    counts = store.manifest["counts"]
    assert counts["units"] == store.read("occurrences").num_rows
    assert counts["distinct_units"] == store.read("units").num_rows
    assert counts["codebook_size"] == store.read("hyperwords").num_rows
    assert store.manifest["model"]["dimension"] == 384 and store.manifest["model"]["source"] == "bundled"


def test_store_reads_with_pandas_and_duckdb(sample_store):
    version = Path(StoreVersion(str(sample_store)).path)
    units = pd.read_parquet(version / "units")
    assert units["occurrence_count"].sum() > len(units)  # the licence boilerplate repeats
    occurrences = f"'{version}/occurrences/*.parquet'"
    hyperwords = f"'{version}/hyperwords/*.parquet'"
    # the files hold no occurrences.hyperword: it is the last code of the semantic id
    rows = duckdb.sql(f"select count(*), count(distinct h.hyperword) from {occurrences} o join {hyperwords} h "
                      "on h.hyperword = o.semantic_id[-1]").fetchall()[0]
    assert rows[0] == len(pd.read_parquet(version / "occurrences")) and rows[1] > 1


def test_every_unit_has_a_hyperword_and_merges_are_above_threshold(sample_store):
    store = StoreVersion(str(sample_store))
    units = store.read("units").to_pandas()
    k = store.manifest["counts"]["codebook_size"]
    assert units["hyperword"].between(0, k - 1).all()
    provenance = store.read("provenance").to_pandas()
    assert (provenance["score"] >= store.manifest["config"]["near_dup_threshold"] - 1e-6).all()
    assert set(provenance["unit_id"]) <= set(units["unit_id"])
    assert not set(provenance["unit_id"]) & set(provenance["canonical_unit_id"])  # canonicals are never merged
    merged = units[units["unit_id"].isin(provenance["unit_id"])]
    assert merged["occurrence_count"].sum() == store.manifest["counts"]["near_duplicate_occurrences"]


def test_inspect_and_single_document(sample_store, capsys):
    assert main(["inspect", str(sample_store)]) == 0
    text = capsys.readouterr().out
    for label in ("documents", "tokens", "distinct units", "near-dup merges", "tokens/hyperword", "codebook size", "store bytes",
                  "bytes per table"):
        assert label in text
    assert main(["inspect", str(sample_store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 5 <= summary["tokens_per_hyperword"] <= 12
    files = json.loads((sample_store / "v000001" / "manifest.json").read_text())["files"]
    assert sum(summary["table_bytes"].values()) == summary["store_bytes"] == sum(f["bytes"] for f in files)
    assert set(summary["table_bytes"]) == {f["table"] for f in files}
    [line] = [line for line in text.splitlines() if line.startswith("bytes per table")]
    assert all(f"{table} {human(n)}" in line for table, n in summary["table_bytes"].items()), line
    assert main(["decompress", str(sample_store), "--doc", "sign-of-the-four.md"]) == 0
    assert capsys.readouterr().out == (SAMPLE_CORPUS / "sign-of-the-four.md").read_bytes().decode("utf-8")


def test_damaged_store_fails_verification_naming_the_document(sample_store, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(sample_store, damaged)
    units_file = next((damaged / "v000001" / "units").glob("*.parquet"))
    pq.write_table(units_with_alice_renamed(units_file), units_file)
    assert main(["decompress", str(damaged), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "[E410] v000001/units/part-00000.parquet" in err and "hyperscene verify" in err
    assert not (tmp_path / "r").exists()

    # A manifest rewritten to match the changed file: the documents' own sha256 still catch it.
    reseal(damaged / "v000001", "units/part-00000.parquet")
    assert main(["decompress", str(damaged), "--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err
    assert "did not match their stored sha256" in err and "alice-in-wonderland.txt" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["compress", "{tmp}/missing", "--out", "{tmp}/s"], "no input matches"),
        (["compress", "{tmp}/empty", "--out", "{tmp}/s"], "holds no files"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--model", "no-such/model-xyz"], "unknown model"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--device", "cuda:7"], "on device 'cuda:7'"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--workers", "3000000000"], "--workers must be from 1 to 256"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--lang", "zz"], "no usable blank pipeline"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--codebok-size", "3"], "unknown option --codebok_size"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--near-dup-threshold", "1.5"], "--near-dup-threshold"),
        (["decompress", "{tmp}/nothing"], "no published store version"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, ru=RU_CORPUS) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("hyperscene "), err


def test_compress_refuses_to_overwrite_a_published_store(sample_store, capsys):
    assert main(["compress", str(SAMPLE_CORPUS), "--out", str(sample_store)]) == 2
    assert "already holds a published store" in capsys.readouterr().err


def test_parquet_records_with_shards_round_trip(tmp_path):
    import pyarrow as pa

    texts = [p.read_bytes().decode("utf-8") for p in sorted(RU_CORPUS.glob("*.txt"))]
    texts += ["", "  \r\n", "Ещё одна строка.\u2028Вторая строка."]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"body": texts, "key": [f"doc-{i}" for i in range(len(texts))]}), tmp_path / "in" / "docs.parquet")
    store = tmp_path / "store"
    compress.run([str(tmp_path / "in"), "--out", str(store), "--lang", "ru", "--text-field", "body", "--id-field", "key", "--num-shards", "2",
                  "--model", "minilm"])
    assert len(StoreVersion(str(store)).files("occurrences")) == 2
    decompress.run([str(store), "--out", str(tmp_path / "out")])
    lines = (tmp_path / "out" / "docs.parquet.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"key": f"doc-{i}", "body": t} for i, t in enumerate(texts)]


def test_inspect_recounts_with_another_tokenizer(sample_store, model_folder):
    from hyperscene.pipelines.inspect_store import summarise

    store = StoreVersion(str(sample_store))
    assert summarise(store, model_folder)["tokens"] == store.manifest["counts"]["tokens"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["compress", "{ru}", "--out", "{tmp}/s", "{ru}"], "unexpected argument"),
        (["compress", "{ru}", "--out", "{tmp}/s", "--runner", "NoSuchRunner"], "--runner 'NoSuchRunner' is not available"),
        (["compress", "{ru}", "--out", "{ru}/gogol-viy.txt"], "is a file"),
        (["decompress", "{store}", "--out", "{ru}/gogol-viy.txt"], "is a file"),
        (["decompress", "{store}", "--out", "{ru}"], "is not empty"),
        (["decompress", "{store}", "--doc", "no-such-doc"], "no document 'no-such-doc'"),
        (["decompress", "{store}", "--version", "9"], "has no version 9"),
        (["inspect", "{store}", "--tokenizer", "nope/nope"], "tokenizer 'nope/nope'"),
    ],
)
def test_more_mistakes_give_one_clear_line(sample_store, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path, ru=RU_CORPUS, store=sample_store) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_store_path_with_glob_characters(tmp_path):
    store = tmp_path / "st[1]"
    compress.run([str(RU_CORPUS / "gogol-viy.txt"), "--out", str(store), "--lang", "ru", "--model", "minilm"])
    decompress.run([str(store), "--out", str(tmp_path / "out[1]")])
    assert (tmp_path / "out[1]" / "gogol-viy.txt").read_bytes() == (RU_CORPUS / "gogol-viy.txt").read_bytes()


def test_same_store_on_every_runner_setting(sample_store, tmp_path):
    """DirectRunner with other worker settings, Beam's portable runner (the path Flink, Spark and
    Dataflow take) and Dask with two worker processes write byte-identical data files."""
    reference = {f["path"]: f["sha256"] for f in StoreVersion(str(sample_store)).manifest["files"]}
    settings = {
        "threads": ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"],
        "processes": ["--workers", "2"],
        "portable": ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK"],
        "dask": ["--runner", "DaskRunner", "--workers", "2"],
    }
    for name, flags in settings.items():
        store = tmp_path / name
        result = compress.run([str(SAMPLE_CORPUS), "--out", str(store), *flags])
        assert {f["path"]: f["sha256"] for f in StoreVersion(str(store)).manifest["files"]} == reference, name
        if name == "dask":  # no metrics there: the timings come from the workers, each stage's work done once
            stages = result["stages"]
            assert 1 <= stages["load model"]["items"] <= 2
            assert stages["segment"]["items"] == result["counts"]["documents"]
            assert stages["embed"]["items"] == result["counts"]["distinct_units"]


def test_static_embedder_round_trip_and_cache(tmp_path, model_folder):
    """The model2vec embedder distilled from the bundled model: same units, other vectors, exact text."""
    from hyperscene.transforms.models import is_static_model, static_model

    cache = tmp_path / "cache"
    store = tmp_path / "store"
    compress.run([str(SAMPLE_CORPUS), "--out", str(store), "--embedder", "static", "--cache-dir", str(cache)])
    [distilled] = list(cache.iterdir())
    assert is_static_model(str(distilled))
    assert static_model(model_folder, str(cache)) == str(distilled)  # cached: no second distillation
    assert static_model(str(distilled)) == str(distilled)  # a static model folder is used as it is
    manifest = StoreVersion(str(store)).manifest
    assert manifest["model"]["embedder"] == "static" and manifest["model"]["dimension"] == 256
    assert manifest["config"]["near_dup_threshold"] == 0.95
    decompress.run([str(store), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "alice-in-wonderland.txt").read_bytes() == (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_bytes()



def test_spilling_long_documents_changes_nothing_in_the_store(sample_store, tmp_path, monkeypatch):
    """With every document counted as long, texts and rows cross the shuffles as scratch files: the
    data files must be byte-identical to those of the values path, and no scratch may stay."""
    spilled = spill_everything(monkeypatch)
    store = tmp_path / "store"
    compress.run([str(SAMPLE_CORPUS), "--out", str(store)])
    assert all(spilled.values()), spilled
    assert data_files(store) == data_files(sample_store)
    assert sorted(p.name for p in store.iterdir()) == ["v000001"]


def test_spilled_windows_reach_the_writer_as_references_and_change_nothing(tmp_path, monkeypatch):
    """Windows of 100 units make the sample's books long documents: their windows' occurrences and
    scenes reach the store writer as spilled rows. The store must equal the one built with values."""
    from hyperscene.transforms import scenes
    from hyperscene.transforms.levels import stage

    monkeypatch.setattr(scenes, "WINDOW_UNITS", 100)
    with monkeypatch.context() as values:
        spill_nothing(values)
        compress.run([str(SAMPLE_CORPUS), "--out", str(tmp_path / "values"), "--embedder", "static"])
    spilled = spill_everything(monkeypatch)
    windows = []
    monkeypatch.setattr(stage, "encode_window", lambda *a, _f=stage.encode_window: windows.append(1) or _f(*a))
    compress.run([str(SAMPLE_CORPUS), "--out", str(tmp_path / "spilled"), "--embedder", "static"])
    assert all(spilled.values()) and len(windows) > 4, (spilled, len(windows))
    assert data_files(tmp_path / "spilled") == data_files(tmp_path / "values")
    decompress.run([str(tmp_path / "spilled"), "--out", str(tmp_path / "restored")])
    restored, original = files_under(tmp_path / "restored"), files_under(SAMPLE_CORPUS)
    assert restored["alice-in-wonderland.txt"] == original["alice-in-wonderland.txt"]
    assert restored["origin-of-species.txt"] == gzip.decompress(original["origin-of-species.txt.gz"])


def test_a_corpus_mixing_english_and_russian(tmp_path, caplog):
    """--lang xx: the multi-language pipeline and e5-small; the default --lang en gets MiniLM, which
    reads English only, and says so with W002 (in the log and in inspect)."""
    import logging
    import shutil

    from hyperscene.pipelines import inspect_store

    corpus = tmp_path / "mixed"
    shutil.copytree(RU_CORPUS, corpus / "ru")
    (corpus / "en").mkdir()
    (corpus / "en" / "alice.txt").write_bytes((SAMPLE_CORPUS / "alice-in-wonderland.txt").read_bytes()[:20_000])
    mixed = compress.run([str(corpus), "--out", str(tmp_path / "xx"), "--lang", "xx"])
    assert mixed["model"]["name"] == "e5-small" and mixed["config"]["max_unit_tokens"] == 9
    assert 0.05 < mixed["counts"]["non_latin_units"] / mixed["counts"]["distinct_units"] < 0.95
    decompress.run([str(tmp_path / "xx"), "--out", str(tmp_path / "restored")])
    assert files_under(tmp_path / "restored") == files_under(corpus)
    assert inspect_store.summarise(StoreVersion(str(tmp_path / "xx")))["model_warnings"] == []

    with caplog.at_level(logging.WARNING, logger="hyperscene"):
        english = compress.run([str(corpus), "--out", str(tmp_path / "en")])
    assert english["model"]["name"] == "minilm"
    [line] = [r.getMessage() for r in caplog.records if "[W002]" in r.getMessage()]
    assert "minilm reads English only" in line and "--lang xx" in line and "\n" not in line
    assert inspect_store.summarise(StoreVersion(str(tmp_path / "en")))["model_warnings"] == [line]


@pytest.mark.parametrize("source", ["../../escaped_dir/pwned", "/tmp/hyperscene-escaped/pwned"])
def test_decompress_never_writes_outside_out(sample_store, tmp_path, capsys, source):
    """A documents table that names a source outside --out (a damaged or hostile store) is refused
    with one coded line naming the document, and nothing lands outside --out."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    [documents] = (store / "v000001" / "documents").glob("*.parquet")
    table = pq.read_table(documents)
    sources = [source if fmt == "jsonl" else s for s, fmt in zip(table["source"].to_pylist(), table["format"].to_pylist())]
    pq.write_table(table.set_column(table.schema.get_field_index("source"), "source", [sources]), documents)
    out = tmp_path / "deep" / "er" / "out"
    assert main(["decompress", str(store), "--out", str(out)]) == 1
    assert "[E410] v000001/documents/part-00000.parquet" in capsys.readouterr().err

    reseal(store / "v000001", "documents/part-00000.parquet")  # tampered with, manifest and all
    assert main(["decompress", str(store), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "[E412] document" in err and "outside --out" in err and "great-expectations" in err and "\n" not in err
    assert not (tmp_path / "deep" / "escaped_dir").exists() and not Path("/tmp/hyperscene-escaped").exists()


def test_a_seed_faiss_cannot_take_is_refused_before_any_work(tmp_path, capsys):
    assert main(["compress", str(SAMPLE_CORPUS), "--out", str(tmp_path / "s"), "--seed", "3000000000"]) == 2
    assert "[E216] --seed must be a whole number from 0 to 2,147,483,647" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
