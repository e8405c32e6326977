import gzip
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from hyperscene.transforms.errors import EmptyInput, InputNotFound
from hyperscene.transforms.inputs import InputFile, discover
from hyperscene.transforms.read import ReadDocuments, read_jsonl, read_text_file
from hyperscene.transforms.spill import NO_SPILL, SpillPolicy, document_text


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfHello.\r\n")
    (tmp_path / "sub" / "b.md").write_text("B", encoding="utf-8")
    (tmp_path / "sub" / "c.txt.gz").write_bytes(gzip.compress(b"gzipped"))
    (tmp_path / "sub" / "d.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(b"zstd"))
    (tmp_path / "notes.tsv").write_text("skipped", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("skipped", encoding="utf-8")
    return tmp_path


def test_discover_directory_recursively(corpus):
    files = discover([str(corpus)])
    assert [f.source for f in files] == ["a.txt", "sub/b.md", "sub/c.txt.gz", "sub/d.txt.zst"]
    assert {f.format for f in files} == {"text"}


def test_discover_glob_and_explicit_file(corpus):
    assert [f.source for f in discover([str(corpus / "sub" / "*.md")])] == ["b.md"]
    assert [f.source for f in discover([str(corpus / "notes.tsv")])] == ["notes.tsv"]


def test_discover_errors(tmp_path):
    with pytest.raises(InputNotFound, match="no input matches"):
        discover([str(tmp_path / "missing")])
    (tmp_path / "only.bin").write_bytes(b"x")
    with pytest.raises(EmptyInput, match="no readable input files"):
        discover([str(tmp_path)])


def test_text_file_keeps_bom_and_rejects_invalid_utf8():
    f = InputFile("x", "x.txt", "text")
    [(tag, doc)] = read_text_file(f, b"\xef\xbb\xbfHi")
    assert tag == "documents" and doc["text"] == "\ufeffHi" and doc["bytes"] == 5
    [(tag, dead)] = read_text_file(f, b"ok \xff bad")
    assert tag == "dead_letters" and dead["reason"] == "invalid UTF-8 at byte 3" and dead["raw"] == b"ok \xff bad"


def test_jsonl_records_and_dead_letters():
    f = InputFile("x", "r.jsonl", "jsonl")
    raw = b'{"text": "one", "id": 7}\n\n{"body": "no text"}\n{"text": null}\nnot json\n{"text": "two"}\r\n'
    out = list(read_jsonl(f, raw, "text", "id"))
    assert [(t, r.get("doc_id"), r.get("record")) for t, r in out] == [
        ("documents", "7", 1),
        ("dead_letters", None, 3),
        ("dead_letters", None, 4),
        ("dead_letters", None, 5),
        ("documents", "r.jsonl:6", 6),
    ]
    assert out[3][1]["raw"] == b"not json"


@pytest.mark.parametrize("spill", [False, True], ids=["texts as values", "long texts spilled"])
def test_read_documents_pipeline(spill, tmp_path):
    """Documents and dead letters are the same whether long texts (here, of 6 bytes or more) travel
    in the records or in scratch files; a repeated id's dead letter still holds its bytes."""
    corpus, scratch = tmp_path / "corpus", tmp_path / "scratch"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha.", encoding="utf-8")
    (corpus / "bad.txt").write_bytes(b"\xff")
    (corpus / "r.jsonl").write_text(json.dumps({"text": "Beta!!", "id": "a.txt"}) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["Gam.", None], "id": ["g", "h"]}), corpus / "t.parquet")
    files = discover([str(corpus)])
    with TestPipeline() as p:
        policy = SpillPolicy.for_scratch(str(scratch), text_bytes=6) if spill else NO_SPILL
        out = p | ReadDocuments(files, "text", "id", spill=policy)
        assert_that(out["documents"] | beam.FlatMap(lambda batch: [(d["doc_id"], document_text(d), d["format"], d.get("text_file") is None)
                                                                    for d in batch]),
                    equal_to([("a.txt", "Alpha.", "text", not spill), ("g", "Gam.", "parquet", True)]), label="docs")
        assert_that(out["dead_letters"] | beam.Map(lambda d: (d["source"], d["reason"].split(" (")[0], d["raw"])),
                    equal_to([("bad.txt", "invalid UTF-8 at byte 0", b"\xff"), ("r.jsonl", "duplicate document id 'a.txt'", b"Beta!!"),
                              ("t.parquet", "'text' is null, not text", None)]), label="dead")
    assert len(list(scratch.glob("text-*.txt")) if spill else []) == (2 if spill else 0)


def test_hidden_folders_and_the_store_being_written_are_skipped(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "store" / "v000001" / "units").mkdir(parents=True)
    (tmp_path / "store" / "v000001" / "units" / "part-00000.parquet").write_bytes(b"PAR1")
    (tmp_path / "a.txt").write_text("A", encoding="utf-8")
    assert [f.source for f in discover([str(tmp_path)], exclude=(str(tmp_path / "store"),))] == ["a.txt"]


def test_paths_with_glob_characters_are_taken_literally_when_they_exist(tmp_path):
    folder = tmp_path / "br[1]"
    folder.mkdir()
    (folder / "a.txt").write_text("A", encoding="utf-8")
    assert [f.source for f in discover([str(folder)])] == ["a.txt"]


def test_jsonl_bom_surrogates_and_metadata():
    f = InputFile("x", "r.jsonl", "jsonl")
    raw = '\ufeff{"text": "one", "id": 7, "lang": "en"}\n{"text": "bad \\ud800 half"}\n'.encode("utf-8")
    (tag1, doc), (tag2, dead) = read_jsonl(f, raw, "text", "id")
    assert tag1 == "documents" and doc["doc_id"] == "7" and json.loads(doc["metadata"]) == {"id": 7, "lang": "en"}
    assert tag2 == "dead_letters" and "lone surrogate" in dead["reason"] and dead["raw"] == b'{"text": "bad \\ud800 half"}'


def test_compressed_parquet_is_read(tmp_path):
    import io

    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["Zipped parquet."]}), buffer)
    (tmp_path / "t.parquet.gz").write_bytes(gzip.compress(buffer.getvalue()))
    files = discover([str(tmp_path)])
    with TestPipeline() as p:
        out = p | ReadDocuments(files)
        assert_that(out["documents"] | beam.FlatMap(lambda batch: [d["text"] for d in batch]), equal_to(["Zipped parquet."]))


def test_the_store_is_skipped_however_its_path_is_spelled(tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "part.parquet").write_bytes(b"PAR1")
    (tmp_path / "a.txt").write_text("A", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [f.source for f in discover([str(tmp_path)], exclude=("store",))] == ["a.txt"]


def test_repeated_ids_across_batches_keep_the_first_by_path_and_record():
    from hyperscene.transforms.read import first_of_each_id

    def doc(doc_id, path, record):
        return {"doc_id": doc_id, "path": path, "source": path, "record": record, "text": f"{path}:{record}"}

    batches = [[doc("b", "z.jsonl", 1), doc("a", "y.jsonl", 2)], [doc("b", "y.jsonl", 7), doc("c", "y.jsonl", 3)],
               [doc("b", "y.jsonl", 5), doc("a", "x.txt", None)]]
    out = list(first_of_each_id((0, batches), batch_documents=2))
    kept = [b for b in out if isinstance(b, list)]
    dead = [o.value for o in out if not isinstance(o, list)]
    assert [[d["text"] for d in b] for b in kept] == [["x.txt:None", "y.jsonl:5"], ["y.jsonl:3"]]
    assert sorted((d["source"], d["record"], d["raw"]) for d in dead) == [
        ("y.jsonl", 2, b"y.jsonl:2"), ("y.jsonl", 7, b"y.jsonl:7"), ("z.jsonl", 1, b"z.jsonl:1")]
    assert all("kept the one in" in d["reason"] for d in dead)
