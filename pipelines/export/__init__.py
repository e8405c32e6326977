"""``hyperscene export``: write training files from a store version.

- ``--format text``: distilled pretraining text, one record per document: the document with every
  exact or near-duplicate unit occurrence dropped after the first occurrence of its group (see
  :class:`hyperscene.transforms.export.Deduper`).
- ``--format hyperwords``: per document its sequence of codes at one level, as vocabulary ids and
  as ``<hw_L_ID>`` token strings, plus ``vocab.jsonl`` and ``centroids.npy`` (row = vocabulary id),
  which :mod:`hyperscene.pipelines.hf_tokenizer` adds to a Hugging Face tokenizer and model.
- ``--format pairs``: chat-format records (``messages``: a user turn and an assistant turn) that
  teach expansion (a scene's codes or gist -> its exact text), compression (text -> codes) and
  transitions (a scene's text -> the next scene's codes and gist, and back) at one scene level,
  with a held-out split by document.

``--order``: document (doc_id order), level (hyperwords and pairs: coarse levels before fine) or
novelty (new meaning before repeats); ``--mix R``: a share R of documents written as their exact
text (text and hyperwords, records of kind ``raw``). Neither changes which documents are held out.

Output folder: ``data/<split>-NNNNN.parquet|jsonl`` shards written as documents stream through,
then ``export.json`` (what was exported, counts, files) last: a folder without it is an export that
did not finish. Documents are read in the --order's order (doc_id order by default), occurrences in
position order; documents that
a later store version marks deleted are skipped. Every document whose text is written is first
rebuilt and checked against its sha256.

    command.py  the run: option checks, the output folder, export.json
    options.py  the command line and Options
    reading.py  the store read in doc_id order, documents rebuilt and checked
    formats.py  text, hyperwords and pairs, written through shard writers
"""

from hyperscene.pipelines.export.command import closing_lines, export, prepare_out, run
from hyperscene.pipelines.export.formats import EXPORTERS, SCHEMAS, Writers, export_hyperwords, export_pairs, export_text
from hyperscene.pipelines.export.options import (
    DEFAULT_MAX_SCENE_TOKENS, DEFAULT_SHARD_SIZE, DEFAULT_TEST_FRACTION, FORMATS, Options, build_parser)
from hyperscene.pipelines.export.reading import (
    BATCH_DOCUMENTS, Occurrences, UnitTables, document_batches, live_documents, read_units)
# benchmarks/distilled_share.py imports these two from here, as it did from the single module.
from hyperscene.transforms.store.documents import OCCURRENCE_COLUMNS, assemble_documents

# The CLI runs the command as hyperscene.pipelines.export.run.
__all__ = [
    "closing_lines", "export", "prepare_out", "run",
    "EXPORTERS", "SCHEMAS", "Writers", "export_hyperwords", "export_pairs", "export_text",
    "DEFAULT_MAX_SCENE_TOKENS", "DEFAULT_SHARD_SIZE", "DEFAULT_TEST_FRACTION", "FORMATS", "Options", "build_parser",
    "BATCH_DOCUMENTS", "Occurrences", "UnitTables", "document_batches", "live_documents", "read_units",
    "OCCURRENCE_COLUMNS", "assemble_documents",
]
