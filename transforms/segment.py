"""Segment documents into units: sentences, and clauses of sentences that are too long.

The guarantee: ``prefix + "".join(u + s for u, s in zip(units, separators)) == text`` for every
text. Cuts are only ever chosen as character offsets; :func:`split_at` then moves the whitespace at
the edges of each piece into separators, so no choice of cut can lose or add a character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import apache_beam as beam

from hyperscene.transforms.errors import Errors, LanguageNotSupported
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress, stage_timer
from hyperscene.transforms.spill import document_text

if TYPE_CHECKING:  # spaCy is heavy: imported where a pipeline is built
    from spacy.language import Language
    from spacy.tokens import Span

# Characters str.splitlines() treats as line breaks; a run of whitespace holding two of them is a
# paragraph break, which is always a unit boundary (headings and verse rarely end in punctuation).
# "\r" alone is a break only when no "\n" follows, so that "\r\n" can never count as two.
_BREAK = r"(?:\r\n|\r(?!\n)|[\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029])"
_INLINE_SPACE = r"[^\S\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
PARAGRAPH_BREAK = re.compile(rf"{_BREAK}(?:{_INLINE_SPACE}*{_BREAK})+\s*")

# spaCy refuses texts over nlp.max_length; chunks also bound memory on huge single-line documents.
MAX_CHUNK_CHARS = 100_000

# The pipeline emits a document's units in slices of about this many (Segmenter.segment_slices), so
# that a huge document's units are never all Python objects at once, here or in exact dedup, which
# hashes each table's texts (benchmarks/bad_input.py --segment-only measures both ways).
SLICE_UNITS = 100_000

# Sentences longer than this many spaCy tokens are cut into clauses. 10 gives about 9 WordPiece
# tokens per unit on English prose (measured by benchmarks/compress_slice.py), inside the 5-10 target.
# Russian words are longer in model tokens: with e5's SentencePiece tokenizer, 10 gives 10.4 tokens
# per unit on ru-classics and 8 gives 8.9, as English at 10 (README, "Units").
DEFAULT_MAX_UNIT_TOKENS = 10
# "xx", spaCy's multi-language pipeline for corpora that mix languages: between English's 10 and
# Russian's 8 (ru-classics: 9.6 e5 tokens per unit at 9).
MAX_UNIT_TOKENS_BY_LANG = {"ru": 8, "xx": 9}


def default_max_unit_tokens(lang: str) -> int:
    return MAX_UNIT_TOKENS_BY_LANG.get(lang, DEFAULT_MAX_UNIT_TOKENS)


DASH_INFIXES = [r"-{2,}", "—", "–", "―"]
CLAUSE_PUNCTUATION = frozenset({",", ";", ":", "—", "–", "--", "―", "…", "...", "(", ")"})

# Words that open a clause, used when the pipeline has no part-of-speech tags (blank pipelines).
CLAUSE_OPENERS = {
    "en": frozenset(
        "and but or nor yet because although though whereas while unless until which who whom "
        "whose where when".split()
    ),
    "ru": frozenset(
        "и а но или либо однако зато хотя чтобы потому если когда который которая которое "
        "которые где".split()
    ),
}
CLAUSE_OPENERS["xx"] = CLAUSE_OPENERS["en"] | CLAUSE_OPENERS["ru"]  # the multi-language pipeline: both lists


@dataclass(frozen=True)
class Segmentation:
    prefix: str
    units: list[str]
    separators: list[str]

    def text(self) -> str:
        return self.prefix + "".join(u + s for u, s in zip(self.units, self.separators))


def split_at(text: str, cuts: Iterable[int]) -> Segmentation:
    """Cut ``text`` at character offsets and strip whitespace from each piece into separators.

    Whitespace (``str.isspace``) before the first unit becomes the prefix; a piece that is only
    whitespace joins the separator before it. Empty units never occur.
    """
    edges = [0, *sorted({c for c in cuts if 0 < c < len(text)}), len(text)]
    prefix = ""
    units: list[str] = []
    separators: list[str] = []
    for start, end in zip(edges, edges[1:]):
        piece = text[start:end]
        core = piece.strip()
        if not core:
            if units:
                separators[-1] += piece
            else:
                prefix += piece
            continue
        lead = piece[: len(piece) - len(piece.lstrip())]
        if units:
            separators[-1] += lead
        else:
            prefix += lead
        units.append(core)
        separators.append(piece[len(lead) + len(core) :])
    return Segmentation(prefix, units, separators)


def chunk_offsets(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[int]:
    """Start offsets of chunks: paragraphs, with over-long ones cut at whitespace (or anywhere)."""
    starts = [0]
    paragraph_starts = [m.end() for m in PARAGRAPH_BREAK.finditer(text) if m.end() < len(text)]
    for boundary in [*paragraph_starts, len(text)]:
        while boundary - starts[-1] > max_chars:
            limit = starts[-1] + max_chars
            space = max(text.rfind(" ", starts[-1] + 1, limit), text.rfind("\n", starts[-1] + 1, limit))
            starts.append(space + 1 if space > 0 else limit)
        if boundary < len(text):
            starts.append(boundary)
    return starts


def load_spacy(lang: str, spacy_model: str | None = None) -> "Language":
    """A blank pipeline with the rule-based sentencizer, or an installed named pipeline."""
    import spacy

    if spacy_model:
        try:
            nlp = spacy.load(spacy_model, exclude=["ner", "lemmatizer", "textcat"])
        except OSError as e:
            raise LanguageNotSupported(Errors.E320.format(pipeline=spacy_model, lang=lang, error=e)) from None
        if not nlp.has_pipe("parser") and not nlp.has_pipe("senter"):
            nlp.add_pipe("sentencizer")
    else:
        try:
            nlp = spacy.blank(lang)
        except (ImportError, KeyError) as e:
            raise LanguageNotSupported(Errors.E321.format(lang=lang, error=e)) from None
        nlp.add_pipe("sentencizer")
        # Dashes written without spaces ("fail,--and") are clause breaks; make them tokens.
        infixes = list(nlp.Defaults.infixes or []) + DASH_INFIXES
        nlp.tokenizer.infix_finditer = spacy.util.compile_infix_regex(infixes).finditer
    nlp.max_length = MAX_CHUNK_CHARS + 1
    return nlp


def _clause_cuts(sentence: "Span", openers: frozenset[str], max_tokens: int) -> list[int]:
    """Character offsets (within the sentence's Doc) where a long sentence is cut into clauses.

    Candidates fall after clause punctuation and before clause-opening words; adjacent pieces are
    merged greedily while they fit in ``max_tokens``. A piece with no candidate inside that is still
    more than twice too long is cut every ``max_tokens`` tokens, so units stay bounded.
    """
    tokens = [t for t in sentence if not t.is_space]
    if len(tokens) <= max_tokens:
        return []
    starts = {0}
    for i, tok in enumerate(tokens):
        if i + 1 < len(tokens) and tok.text in CLAUSE_PUNCTUATION:
            starts.add(i + 1)
        if i > 0 and (tok.lower_ in openers or tok.pos_ in ("CCONJ", "SCONJ")):
            starts.add(i)
    bounds = sorted(starts) + [len(tokens)]
    pieces = list(zip(bounds, bounds[1:]))

    merged: list[tuple[int, int]] = []
    for start, end in pieces:
        if merged and end - merged[-1][0] <= max_tokens:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))

    cuts: list[int] = []
    for start, end in merged:
        if start:
            cuts.append(tokens[start].idx)
        if end - start > 2 * max_tokens:
            cuts.extend(tokens[i].idx for i in range(start + max_tokens, end, max_tokens))
    return cuts


class Segmenter:
    """Turns texts into :class:`Segmentation` with one spaCy pipeline, loaded lazily."""

    def __init__(self, lang: str = "en", spacy_model: str | None = None, max_unit_tokens: int = DEFAULT_MAX_UNIT_TOKENS,
                 max_chunk_chars: int = MAX_CHUNK_CHARS):
        self.lang = lang
        self.spacy_model = spacy_model
        self.max_unit_tokens = max_unit_tokens
        self.max_chunk_chars = max_chunk_chars
        self._nlp: "Language | None" = None

    @property
    def nlp(self) -> "Language":
        if self._nlp is None:
            self._nlp = load_spacy(self.lang, self.spacy_model)
        return self._nlp

    def segment(self, text: str) -> Segmentation:
        return next(self.segment_many([text]))

    def segment_many(self, texts: Sequence[str]) -> Iterator[Segmentation]:
        """Each text's segmentation; the chunks of all of them go through spaCy in one stream."""
        openers = CLAUSE_OPENERS.get(self.nlp.lang, frozenset())
        starts = [chunk_offsets(text, self.max_chunk_chars) for text in texts]
        chunks = (text[a:b] for text, s in zip(texts, starts) for a, b in zip(s, [*s[1:], len(text)]))
        docs = self.nlp.pipe(chunks, batch_size=64)
        for text, text_starts in zip(texts, starts):
            cuts: list[int] = list(text_starts)
            for offset, doc in zip(text_starts, docs):
                for sentence in doc.sents:
                    cuts.append(offset + sentence.start_char)
                    cuts.extend(offset + c for c in _clause_cuts(sentence, openers, self.max_unit_tokens))
            yield split_at(text, cuts)

    def segment_slices(self, text: str, slice_units: int = SLICE_UNITS) -> Iterator[Segmentation]:
        """``segment(text)`` in consecutive slices, each emitted once more than ``slice_units`` (at
        least 1) units are in: the first carries the prefix, the others an empty one, and joined they
        are exactly ``segment(text)``. A text of up to ``slice_units`` units is one slice.

        Each chunk is cut on its own (the cuts are the same: chunk starts are cuts anyway); what
        :func:`split_at` would put after the previous unit, the whitespace a chunk starts with, goes
        there, so the last unit is held back until the next one arrives.
        """
        if slice_units < 1:
            raise ValueError(f"slice_units must be at least 1, not {slice_units}")
        openers = CLAUSE_OPENERS.get(self.nlp.lang, frozenset())
        starts = chunk_offsets(text, self.max_chunk_chars)
        bounds = list(zip(starts, [*starts[1:], len(text)]))
        prefix, units, separators, first = "", [], [], True
        for (a, b), doc in zip(bounds, self.nlp.pipe((text[a:b] for a, b in bounds), batch_size=64)):
            cuts: list[int] = []
            for sentence in doc.sents:
                cuts.append(sentence.start_char)
                cuts.extend(_clause_cuts(sentence, openers, self.max_unit_tokens))
            seg = split_at(text[a:b], cuts)
            if units:
                separators[-1] += seg.prefix
            else:  # no unit yet in the whole text (one is always held back once there is one)
                prefix += seg.prefix
            units.extend(seg.units)
            separators.extend(seg.separators)
            if len(units) > slice_units:
                yield Segmentation(prefix if first else "", units[:-1], separators[:-1])
                units, separators, first = units[-1:], separators[-1:], False
        yield Segmentation(prefix if first else "", units, separators)


# Rows of the occurrence tables segmentation hands on, at least, where documents are short.
BATCH_UNITS = 5_000  # below SpillPolicy.slice_rows: short documents stay values, as before


class _SegmentDoFn(beam.DoFn):
    def __init__(self, lang: str, spacy_model: str | None, max_unit_tokens: int):
        self._args = (lang, spacy_model, max_unit_tokens)

    def setup(self):
        self._segmenter = Segmenter(*self._args)
        # Short documents of a batch go through spaCy together where no component is trained (the
        # rule-based sentencizer): a trained one's output could depend on its batch mates' shapes,
        # and a document's units must not.
        self._together = set(self._segmenter.nlp.pipe_names) <= {"sentencizer"}
        self._progress = Progress("segment", "documents")

    def start_bundle(self):
        self._short = OccurrenceRows()

    def process(self, docs: list[dict]):
        together = self._segmented_together(docs)
        metas = []
        for i, doc in enumerate(docs):
            seg = together.get(i)
            slices = self._segmenter.segment_slices(document_text(doc)) if seg is None else iter([seg])
            metas.append((yield from self._occurrences(doc, slices, count=seg is None)))
        if metas:
            yield beam.pvalue.TaggedOutput("documents", metas)

    def _segmented_together(self, docs: list[dict]) -> dict[int, Segmentation]:
        """{index in ``docs``: segmentation} of the short documents, segmented in one spaCy pass."""
        if not self._together:
            return {}
        limit = self._segmenter.max_chunk_chars  # one chunk: a single slice (SLICE_UNITS > characters)
        short = [i for i, doc in enumerate(docs) if doc.get("text_file") is None and len(doc["text"]) <= limit]
        with self._progress.timed(len(short)):
            return dict(zip(short, self._segmenter.segment_many([docs[i]["text"] for i in short])))

    def _occurrences(self, doc: dict, slices: Iterator[Segmentation], count: bool):
        """Yields the occurrence tables that are full; returns the document's row."""
        # One occurrence table per slice: a huge document never becomes one table of Python lists.
        # Short documents' rows are gathered into one table (BATCH_UNITS rows at least) before they
        # go on: each element crossing a shuffle costs about as much as segmenting a short document.
        position, prefix = 0, None
        while True:
            with self._progress.timed(1) if count and prefix is None else stage_timer("segment", 0):
                seg = next(slices, None)
                if seg is not None:
                    table = None
                    if len(seg.units) >= BATCH_UNITS:
                        table = occurrence_table(doc["doc_id"], seg, position)
                    else:
                        self._short.add(doc["doc_id"], seg, position)
                        if self._short.rows >= BATCH_UNITS:
                            table, self._short = self._short.table(), OccurrenceRows()
            if seg is None:
                break
            if table is not None:
                yield table
            prefix = seg.prefix if prefix is None else prefix
            position += len(seg.units)
        meta = {k: v for k, v in doc.items() if k not in ("text", "text_file")}
        meta.update(prefix=prefix, unit_count=position)
        return meta

    def finish_bundle(self):
        if self._short.rows:
            from apache_beam.transforms.window import GlobalWindow
            from apache_beam.utils.windowed_value import WindowedValue

            table, self._short = self._short.table(), OccurrenceRows()
            yield WindowedValue(table, 0, [GlobalWindow()])


class OccurrenceRows:
    """Occurrence rows of short documents, gathered as lists and built into one table at the end."""

    def __init__(self):
        self.rows = 0
        self._doc_ids, self._positions, self._texts, self._separators = [], [], [], []

    def add(self, doc_id: str, seg: Segmentation, first_position: int) -> None:
        n = len(seg.units)
        self._doc_ids.extend([doc_id] * n)
        self._positions.extend(range(first_position, first_position + n))
        self._texts.extend(seg.units)
        self._separators.extend(seg.separators)
        self.rows += n

    def table(self):
        import pyarrow as pa

        return pa.table({"doc_id": pa.array(self._doc_ids, pa.string()), "position": pa.array(self._positions, pa.int64()),
                         "text": pa.array(self._texts, pa.string()), "separator": pa.array(self._separators, pa.string())})


def occurrence_table(doc_id: str, seg: Segmentation, first_position: int = 0):
    """Units in order, as one Arrow table: ``doc_id, position, text, separator``; positions from
    ``first_position`` (a slice of a document)."""
    import pyarrow as pa

    n = len(seg.units)
    return pa.table(
        {
            "doc_id": pa.array([doc_id] * n, pa.string()),
            "position": pa.array(range(first_position, first_position + n), pa.int64()),
            "text": pa.array(seg.units, pa.string()),
            "separator": pa.array(seg.separators, pa.string()),
        }
    )


class Segment(beam.PTransform):
    """Batches of documents (lists, as :class:`~hyperscene.transforms.read.ReadDocuments` gives
    them) -> occurrence tables (main output: a long document's slices, short documents' rows
    gathered, ``BATCH_UNITS`` or more a table) and document rows (tag ``documents``: a list per
    batch, each row its document's record less the text, with ``prefix`` and ``unit_count``)."""

    def __init__(self, lang: str, spacy_model: str | None, max_unit_tokens: int):
        super().__init__()
        self._fn = _SegmentDoFn(lang, spacy_model, max_unit_tokens)

    def expand(self, documents):
        return documents | SplitOutputs(self._fn, tags=("documents",), main="occurrences")


def document_table(docs: list[dict], revisions: dict[str, int] | None, version: int):
    """Segment's document rows (a batch) as a documents table: their revision (1 where
    ``revisions`` is None), added in ``version``."""
    import pyarrow as pa

    from hyperscene.schemas import TABLES

    rows = [{**d, "revision": 1 if revisions is None else revisions[d["doc_id"]], "added_in_version": version, "deleted": False}
            for d in docs]
    return pa.Table.from_pylist(rows, schema=TABLES["documents"])
