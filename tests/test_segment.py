import functools

from hypothesis import given, settings, strategies as st
import pytest

from hyperscene.transforms.segment import PARAGRAPH_BREAK, Segmenter, chunk_offsets, split_at


@pytest.fixture(scope="module")
def en():
    return Segmenter("en", max_unit_tokens=10)


@pytest.fixture(scope="module")
def ru():
    return Segmenter("ru", max_unit_tokens=10)


def test_split_at_moves_edge_whitespace_into_separators():
    seg = split_at("  One two.  Three.\n", [11])
    assert seg.prefix == "  "
    assert seg.units == ["One two.", "Three."]
    assert seg.separators == ["  ", "\n"]


def test_split_at_whitespace_only_and_empty():
    assert split_at(" \r\n\t", [2]).units == []
    assert split_at(" \r\n\t", [2]).prefix == " \r\n\t"
    assert split_at("", []).text() == ""


def test_sentences_and_paragraphs(en):
    text = "CHAPTER I\r\n\r\nAlice was tired. She sat down!\r\nThe end"
    seg = en.segment(text)
    assert seg.units == ["CHAPTER I", "Alice was tired.", "She sat down!", "The end"]
    assert seg.separators == ["\r\n\r\n", " ", "\r\n", ""]
    assert seg.text() == text


def test_long_sentence_is_cut_into_clauses(en):
    text = ("The kettle would glow like a fiery furnace,--the irons would scorch, the linens would dry "
            "in the wind, and spirits would fail before the evening came upon the weary house.")
    seg = en.segment(text)
    assert len(seg.units) >= 3
    assert seg.units[0] == "The kettle would glow like a fiery furnace,--"
    assert seg.text() == text


def test_russian_clauses(ru):
    text = ("Говорили, что на набережной появилось новое лицо: дама с собачкой, и Дмитрий Дмитрич "
            "Гуров, проживший в Ялте уже две недели и привыкший тут, тоже стал интересоваться новыми лицами.")
    seg = ru.segment(text)
    assert len(seg.units) > 2
    assert seg.text() == text


def test_text_without_any_cut_point_stays_bounded(en):
    words = " ".join(f"w{i}" for i in range(100))
    seg = en.segment(words)
    assert max(len(u.split()) for u in seg.units) <= 10
    assert seg.text() == words


def test_paragraph_break_regex_accepts_every_line_ending():
    for br in ("\n\n", "\r\n\r\n", "\r\r", "\u2029\u2029", "\n  \t\n", "\u2028\n"):
        assert PARAGRAPH_BREAK.search(f"a{br}b"), repr(br)
    for single in ("\n", "\r\n", "\r", "\u2028", "\n \t"):
        assert not PARAGRAPH_BREAK.search(f"a{single}b"), repr(single)


def test_chunks_of_a_huge_line_are_bounded():
    text = ("word " * 50_000) + "x" * 250_000
    starts = chunk_offsets(text, max_chars=100_000)
    ends = starts[1:] + [len(text)]
    assert starts[0] == 0 and all(0 < b - a <= 100_000 for a, b in zip(starts, ends))


LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"])
PIECES = st.one_of(
    st.text(max_size=30),
    LINE_ENDINGS,
    st.sampled_from([". ", "! ", "? ", ", ", "; ", "--", " and ", "\t", "\u200b", "\u0301", "שלום", "👩‍👩‍👧", "\ufeff"]),
    st.text(alphabet=st.characters(categories=["Zs", "Cc", "Mn", "So", "Lo"]), max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join))
def test_segmentation_reassembles_any_text(en, text):
    seg = en.segment(text)
    assert seg.text() == text
    assert all(u and u == u.strip() for u in seg.units)
    assert all(not s.strip() for s in [seg.prefix, *seg.separators])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_russian_segmentation_reassembles_any_text(ru, text):
    assert ru.segment(text).text() == text


# one per chunk size: loading spaCy for each example would be most of these tests' time
@functools.cache
def _segmenter(max_chunk_chars: int) -> Segmenter:
    return Segmenter("en", max_unit_tokens=10, max_chunk_chars=max_chunk_chars)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=60).map("".join), st.integers(8, 60), st.integers(1, 6))
def test_slices_join_into_the_whole_segmentation(text, max_chunk_chars, slice_units):
    """A huge document is segmented slice by slice (chunk by chunk inside): joined, the slices are
    the same prefix, units and separators as segmenting it whole, wherever chunks and slices fall."""
    segmenter = _segmenter(max_chunk_chars)
    (whole,) = segmenter.segment_many([text])
    slices = list(segmenter.segment_slices(text, slice_units))
    assert slices[0].prefix == whole.prefix and all(s.prefix == "" for s in slices[1:])
    assert [u for s in slices for u in s.units] == whole.units
    assert [x for s in slices for x in s.separators] == whole.separators
    assert all(len(s.units) >= slice_units for s in slices[:-1])  # bounded by slice_units plus one chunk's


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(PIECES, max_size=20).map("".join), max_size=8), st.sampled_from([8, 13, 30, 60]))
def test_texts_segmented_together_are_segmented_as_each_alone(texts, max_chunk_chars):
    """Short documents of a batch share one spaCy stream: each one's units are those it gets alone."""
    segmenter = _segmenter(max_chunk_chars)
    assert list(segmenter.segment_many(texts)) == [segmenter.segment(t) for t in texts]


def test_segment_gives_each_document_of_a_batch_the_rows_it_gets_alone(tmp_path):
    """A batch of short documents (segmented together) and a spilled long one (by slices) give the
    same occurrence rows and document rows as each document in a batch of its own."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from hyperscene.transforms.segment import Segment
    from hyperscene.transforms.spill import SpillPolicy

    texts = ["One. Two and three, four.", "", "  \n\nFive!\n\n", "Six, seven. " * 400]
    docs = [{"doc_id": f"d{i}", "path": "r.jsonl", "record": i, "bytes": len(t.encode()), "text": t} for i, t in enumerate(texts)]
    docs[-1] = SpillPolicy.for_scratch(str(tmp_path), text_bytes=1000).hold_text(docs[-1])
    assert "text_file" in docs[-1]

    expected_occ, expected_docs = [], []
    for d in docs:
        seg = Segmenter("en", max_unit_tokens=10).segment(texts[int(d["doc_id"][1:])])
        expected_occ += [(d["doc_id"], i, u, sep) for i, (u, sep) in enumerate(zip(seg.units, seg.separators))]
        meta = {k: v for k, v in d.items() if k not in ("text", "text_file")}
        expected_docs.append(tuple(sorted({**meta, "prefix": seg.prefix, "unit_count": len(seg.units)}.items())))
    assert len(expected_occ) > 400

    for label, batches in [("together", [docs]), ("alone", [[d] for d in docs])]:
        with TestPipeline() as p:
            out = p | label >> beam.Create(batches, reshuffle=False) | Segment("en", None, 10)
            occurrences = out.occurrences | beam.FlatMap(lambda t: [tuple(r.values()) for r in t.to_pylist()])
            documents = out.documents | beam.FlatMap(lambda batch: [tuple(sorted(d.items())) for d in batch])
            assert_that(occurrences, equal_to(expected_occ), label="occ")
            assert_that(documents, equal_to(expected_docs), label="docs")
