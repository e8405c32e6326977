"""What ``hyperscene export`` can be asked for: the command line and the options it becomes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from hyperscene.transforms import export as ex

FORMATS = ("text", "hyperwords", "pairs")
DEFAULT_SHARD_SIZE = "256MB"
DEFAULT_TEST_FRACTION = {"text": 0.0, "hyperwords": 0.0, "pairs": 0.05}
DEFAULT_MAX_SCENE_TOKENS = 4096


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene export",
        description="Write training files from a store: distilled text (--format text), hyperword code sequences with "
                    "their vocabulary and centroids (--format hyperwords), or chat pairs teaching expansion, "
                    "compression and transitions (--format pairs); in document, level or novelty --order, text and "
                    "hyperwords with a --mix of exact text. Shards go to OUT/data/<split>-NNNNN.parquet|jsonl and load with "
                    "datasets.load_dataset('parquet' or 'json', data_files=...); OUT/export.json, written last, "
                    "records what was exported.",
    )
    order_help = ("the order records are written in, always the same for the same store and options: document "
                  "(default): documents in doc_id order; level (hyperwords and pairs): coarse before fine, every "
                  "record of the deepest level first, then each finer level down to --level, documents in doc_id "
                  "order within a level; novelty: new meaning before repeats: pairs put every scene whose code and "
                  "children's codes come for the first time (walking documents in doc_id order) before the scenes "
                  "that repeat one; text and hyperwords order documents by novelty, the share of a document's unit "
                  "occurrences whose hyperword appears in no earlier document (in doc_id order), highest first, ties "
                  "by doc_id. The held-out split is the same in every order")
    p.add_argument("store", help="store directory")
    p.add_argument("--format", choices=FORMATS, default="text", help="what to write (default: text)")
    p.add_argument("--out", required=True, help="output directory: new or empty (see --overwrite)")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export in --out: deletes its files (data/ shards, export.json, vocab.jsonl, "
                        "centroids.npy); refused when --out holds any other file")
    p.add_argument("--file-format", choices=ex.FILE_FORMATS,
                   help="shard files: parquet (default for text and hyperwords) or jsonl (default for pairs)")
    p.add_argument("--shard-size", default=DEFAULT_SHARD_SIZE, metavar="SIZE",
                   help=f"close a shard once its records reach this size, counted as their JSON lines "
                        f"(e.g. 64MB, 1GB; default {DEFAULT_SHARD_SIZE}); a larger record gets a shard of its own")
    p.add_argument("--test-fraction", type=float, metavar="F",
                   help="hold out this fraction of documents as the test split, chosen by a hash of the doc_id so a "
                        "document's split never depends on the others; when that picks none of two or more documents, "
                        "one is held out (default: 0.05 for pairs, 0 for text and hyperwords)")
    p.add_argument("--order", choices=ex.ORDERS, default="document", help=order_help)
    p.add_argument("--mix", type=float, default=0.0, metavar="R",
                   help="text and hyperwords: write a share R (0 <= R < 1) of documents, chosen by a hash of the "
                        "doc_id independent of the held-out split, as their exact original text (checked against "
                        "its sha256) instead of distilled text or codes; their records have kind 'raw' (default: 0)")
    p.add_argument("--tokenizer", help="count tokens in and out with this Hugging Face tokenizer (name in the local cache, "
                   "or folder) instead of the store's own counts (the embedding model's tokenizer)")
    g = p.add_argument_group("text")
    g.add_argument("--dedup-scope", choices=ex.DEDUP_SCOPES, default="corpus",
                   help="corpus (default): a unit occurrence is dropped when an exact or near duplicate of it came "
                        "earlier anywhere (documents in the --order they are written in, units in position order; "
                        "--mix's raw documents drop nothing but count as earlier); document: only when it came "
                        "earlier in the same document")
    g.add_argument("--min-dedup-tokens", type=int, default=0, metavar="N",
                   help="never drop units shorter than N tokens, so short repeats such as 'Yes.' stay (default: 0, "
                        "every duplicate is dropped)")
    g = p.add_argument_group("hyperwords and pairs")
    g.add_argument("--level", type=int, metavar="L",
                   help="hyperwords: 0 = the units' hyperwords (default), L >= 1 = the codes of the level-L scenes; "
                        "pairs: the scene level (default: 1); with --order level, the finest level written. A document "
                        "with fewer levels than L contributes its root scene, whose token names its own level")
    g.add_argument("--tasks", default=ex.DEFAULT_TASKS,
                   help="pairs: comma-separated expand, compress and/or transitions (default: expand,compress); "
                        "transitions: for each scene with a next scene at its level in its document, its text -> "
                        "the next scene's codes and gist (transition_next), and back (transition_previous)")
    g.add_argument("--expand-from", choices=ex.EXPAND_FROM, default="codes",
                   help="pairs: what an expansion prompt gives: the scene's codes (its own, then its children's), "
                        "its gist (its most central units), or both as two pairs (default: codes)")
    g.add_argument("--max-scene-tokens", type=int, default=DEFAULT_MAX_SCENE_TOKENS, metavar="N",
                   help=f"pairs: skip scenes longer than N tokens, and their transitions (default: {DEFAULT_MAX_SCENE_TOKENS}; "
                        f"0: no limit)")
    return p


@dataclass
class Options:
    store: str
    out: str
    fmt: str = "text"
    version: int | None = None
    overwrite: bool = False
    file_format: str | None = None
    shard_size: str = DEFAULT_SHARD_SIZE
    test_fraction: float | None = None
    tokenizer: str | None = None
    dedup_scope: str = "corpus"
    min_dedup_tokens: int = 0
    level: int | None = None
    tasks: str = ex.DEFAULT_TASKS
    expand_from: str = "codes"
    max_scene_tokens: int = DEFAULT_MAX_SCENE_TOKENS
    order: str = "document"
    mix: float = 0.0
