"""Bad input (issue 5, part 5): each case either round-trips exactly or is a dead letter with its
source, record, reason and raw bytes, so nothing is lost; the counts reach the manifest and inspect.

The cases are those of ``benchmarks/bad_input.py`` (which prints them as a table, plus a 200 MB
single-line document): invalid UTF-8 in a text file and in a JSONL line, malformed JSONL lines, a
record without its text field, NUL bytes, binary and corrupt or truncated compressed files, empty and
whitespace-only documents, mixed CRLF/LF/CR, U+2028/U+2029/U+0085/VT/FF, byte-order marks, a file
name that is not UTF-8, a FIFO and a link to /dev/zero. All of them are compressed in one run.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import REPO
from hyperscene.pipelines import compress, decompress
from hyperscene.pipelines.cli import main
from hyperscene.transforms.store.reader import StoreVersion

_spec = importlib.util.spec_from_file_location("bad_input_cases", REPO / "benchmarks" / "bad_input.py")
cases_module = sys.modules["bad_input_cases"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases_module)
CASES = cases_module.text_cases() + cases_module.jsonl_cases() + cases_module.file_cases()


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """(corpus folder, store, restored folder, manifest) of one compress and decompress of every case."""
    tmp = tmp_path_factory.mktemp("bad-input")
    corpus, store, restored = tmp / "corpus", tmp / "store", tmp / "restored"
    cases_module.write_cases(corpus)
    manifest = compress.run([str(corpus), "--out", str(store)])
    decompress.run([str(store), "--out", str(restored)])
    return corpus, store, restored, manifest


@pytest.fixture(scope="module")
def dead_letters(compressed):
    rows = StoreVersion(str(compressed[1])).read("dead_letters").to_pylist()
    return {(r["source"], r["record"]): r for r in rows}


@pytest.fixture(scope="module")
def restored_records(compressed):
    """JSONL records as decompress wrote them, by their "id" field."""
    lines = (compressed[2] / "records.jsonl").read_bytes().split(b"\n")
    return {obj["id"]: obj for obj in (json.loads(line) for line in lines if line)}


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_each_case_round_trips_or_is_a_dead_letter(case, compressed, dead_letters, restored_records):
    letter = dead_letters.get((case.source or case.file, case.record))
    if case.expect is None:
        assert letter is None, letter
        if case.record is None:
            name = case.file[:-3] if case.file.endswith(".gz") else case.file
            assert (compressed[2] / name).read_bytes() == cases_module.content(case)
        else:
            original = json.loads(case.raw.decode("utf-8-sig"))
            assert restored_records[original["id"]]["text"] == original["text"]
    else:
        assert letter is not None, f"{case.file} record {case.record} is neither restored nor a dead letter"
        assert case.expect in letter["reason"]
        assert letter["raw"] == case.raw  # the bytes as they were: a text file's, a JSONL line's, a .gz file's as stored
        assert not (compressed[2] / case.file.removesuffix(".gz")).exists() or case.record is not None


def test_nothing_is_lost_and_counts_reach_manifest_and_inspect(compressed, dead_letters, restored_records, capsys):
    corpus, store, restored, manifest = compressed
    expected_dead = [c for c in CASES if c.expect is not None]
    assert len(dead_letters) == len(expected_dead) == manifest["counts"]["dead_letters"]
    documents = StoreVersion(str(store)).read("documents")
    assert documents.num_rows == len(CASES) - len(expected_dead) == manifest["counts"]["documents"]
    # every line of records.jsonl is a record restored or a dead letter; empty.jsonl has no records
    lines = (corpus / "records.jsonl").read_bytes().splitlines()
    assert len(lines) == len(restored_records) + sum(1 for source, _ in dead_letters if source == "records.jsonl")
    assert main(["inspect", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dead_letters"] == len(expected_dead)
    assert main(["inspect", str(store)]) == 0
    assert any(line.split()[:2] == ["dead", "letters"] and str(len(expected_dead)) in line
               for line in capsys.readouterr().out.splitlines())


def test_whitespace_only_and_empty_documents_have_no_units(compressed):
    documents = {d["doc_id"]: d for d in StoreVersion(str(compressed[1])).read("documents").to_pylist()}
    assert documents["empty.txt"]["unit_count"] == 0 and documents["empty.txt"]["bytes"] == 0
    assert documents["whitespace.txt"]["unit_count"] == 0
    assert documents["whitespace.txt"]["prefix"].encode("utf-8") == (compressed[0] / "whitespace.txt").read_bytes()


def test_a_corpus_of_nothing_but_bad_input(tmp_path, capsys):
    """Every record a dead letter: a store of dead letters, one line saying so, no traceback."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "image.txt").write_bytes(cases_module.png_bytes())
    (corpus / "r.jsonl").write_bytes(b'{"body": "no text"}\nnot json\n')
    assert main(["compress", str(corpus), "--out", str(tmp_path / "store")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "3 input record(s) were not stored as documents" in err
    store = StoreVersion(str(tmp_path / "store"))
    assert store.manifest["counts"]["dead_letters"] == store.read("dead_letters").num_rows == 3
    assert store.read("documents").num_rows == 0
    assert main(["decompress", str(tmp_path / "store"), "--out", str(tmp_path / "restored")]) == 0


def test_compressed_streams_are_read_strictly():
    import bz2
    import gzip
    import lzma
    import zlib

    import zstandard

    from hyperscene.transforms.read import decompress_strictly

    data = b"A line that compresses well. " * 500
    compressors = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".deflate": zlib.compress,
                   ".zst": zstandard.ZstdCompressor().compress}
    for suffix, compressor in compressors.items():
        packed = compressor(data)
        assert decompress_strictly("a.txt" + suffix, packed) == data
        assert decompress_strictly("a.txt" + suffix, packed + compressor(b"more")) == data + b"more"
        with pytest.raises(Exception):
            decompress_strictly("a.txt" + suffix, packed[: len(packed) // 2])
    assert decompress_strictly("a.txt", b"\x1f\x8b not decompressed") == b"\x1f\x8b not decompressed"
    assert decompress_strictly("a.txt.gz", b"") == b""


def test_static_embedder_and_units_without_tokens(tmp_path):
    """The static embedder has no vector for a unit none of whose tokens it knows; such units get
    the zero vector instead of NaN, which stopped FAISS k-means and the whole run."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in {"bom.txt": "\ufeff", "nul.txt": "\x00\x00", "zw.txt": "\u200b", "mark.txt": "\u0301",
                       "prose.txt": "An ordinary sentence. Another one follows it."}.items():
        (corpus / name).write_text(text, encoding="utf-8")
    compress.run([str(corpus), "--out", str(tmp_path / "store"), "--embedder", "static"])
    decompress.run([str(tmp_path / "store"), "--out", str(tmp_path / "restored")])
    assert {p.name: p.read_bytes() for p in (tmp_path / "restored").iterdir()} == {
        p.name: p.read_bytes() for p in corpus.iterdir()}


def test_a_parquet_file_without_the_text_column_is_kept_whole():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hyperscene.transforms.inputs import InputFile
    from hyperscene.transforms.read import read_parquet

    buffer = io.BytesIO()
    pq.write_table(pa.table({"body": ["the text is here"], "n": [1]}), buffer)
    [(tag, letter)] = read_parquet(InputFile("x", "t.parquet", "parquet"), buffer.getvalue(), "text", None)
    assert tag == "dead_letters" and letter["reason"] == "no 'text' column (has: body, n)"
    assert letter["raw"] == buffer.getvalue()


def _write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_store_given_as_input_is_refused_and_one_inside_it_skipped(sample_store, tmp_path, capsys):
    """Issue 14, item 7: a store's Parquet tables are no corpus."""
    import shutil

    assert main(["compress", str(sample_store), "--out", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err
    assert "[E104]" in err and "is a hyperscene store, not a corpus" in err and "hyperscene decompress" in err
    assert not (tmp_path / "s2").exists()

    corpus = tmp_path / "corpus"
    _write(corpus, {"a.txt": "One plain document.\n"})
    shutil.copytree(sample_store, corpus / "old-store")
    assert main(["compress", str(corpus), "--out", str(tmp_path / "s3"), "--embedder", "static"]) == 0
    assert f"[W004] skipping {corpus / 'old-store'} inside the input" in capsys.readouterr().err
    assert StoreVersion(str(tmp_path / "s3")).read("documents")["doc_id"].to_pylist() == ["a.txt"]


@pytest.mark.parametrize("layout", ["parquet beside its restored name", "two roots with one relative path"])
def test_sources_that_would_be_restored_to_one_path_are_refused(tmp_path, capsys, layout):
    """Issue 14, item 5: two sources restored into one file would come back interleaved."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout == "parquet beside its restored name":
        root = tmp_path / "in"
        root.mkdir()
        pq.write_table(pa.table({"id": ["p1"], "text": ["From the Parquet file."]}), root / "x.parquet")
        _write(root, {"x.parquet.jsonl": '{"id": "j1", "text": "From the JSONL file."}\n'})
        inputs, named = [str(root)], ["in/x.parquet'", "in/x.parquet.jsonl'"]
    else:
        for root in ("r1", "r2"):
            _write(tmp_path / root, {"sub/data.jsonl": f'{{"id": "{root}", "text": "A record of {root}."}}\n'})
        inputs, named = [str(tmp_path / "r1"), str(tmp_path / "r2")], ["r1/sub/data.jsonl", "r2/sub/data.jsonl"]
    assert main(["compress", *inputs, "--out", str(tmp_path / "s"), "--embedder", "static"]) == 2
    err = capsys.readouterr().err.strip()
    assert "[E105]" in err and "would both be restored to" in err and all(n in err for n in named), err
    assert "\n" not in err and not (tmp_path / "s").exists()


def test_a_file_replaced_by_a_folder_of_its_name(tmp_path, capsys):
    """Issue 14, item 10: a.txt becomes a.txt/b.txt. The refresh that would keep both says so; with
    --delete-missing it goes ahead and decompress gives the folder back; a store that holds both
    anyway is refused by decompress before it writes anything."""
    import pyarrow.parquet as pq

    from conftest import reseal

    corpus, store = tmp_path / "corpus", tmp_path / "store"
    _write(corpus, {"a.txt": "The first file.\n", "c.txt": "The second file.\n"})
    compress.run([str(corpus), "--out", str(store), "--embedder", "static"])
    (corpus / "a.txt").unlink()
    _write(corpus, {"a.txt/b.txt": "Now a file in a folder.\n"})
    assert main(["refresh", str(store), str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "[E105] document 'a.txt' is restored to the file 'a.txt', which document 'a.txt/b.txt' needs as a folder" in err
    assert "--delete-missing" in err and not (store / "v000002").exists()
    assert main(["refresh", str(store), str(corpus), "--delete-missing"]) == 0
    assert main(["decompress", str(store), "--out", str(tmp_path / "restored")]) == 0
    assert (tmp_path / "restored" / "a.txt" / "b.txt").read_text() == "Now a file in a folder.\n"

    # A store that names both anyway (written by hand): nothing is written, and the way out is named.
    [documents] = (store / "v000001" / "documents").glob("*.parquet")
    table = pq.read_table(documents)
    ids = ["a.txt/b.txt" if d == "c.txt" else d for d in table["doc_id"].to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("doc_id"), "doc_id", [ids]), documents)
    reseal(store / "v000001", documents.relative_to(store / "v000001").as_posix())
    capsys.readouterr()
    assert main(["decompress", str(store), "--version", "1", "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert "[E424] document 'a.txt' is restored to the file 'a.txt'" in err and "--doc ID --out DIR" in err
    assert not (tmp_path / "r1").exists()
