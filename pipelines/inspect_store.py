"""``hyperscene inspect``: what a store holds and how much the compression did."""

from __future__ import annotations

import argparse
import json
import sys

from hyperscene.pipelines.cliutil import human
from hyperscene.transforms.errors import ModelNotFound
from hyperscene.transforms.store import StoreVersion


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperscene inspect", description="Summarise a store.")
    p.add_argument("store", help="store directory")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--tokenizer", help="count tokens with this Hugging Face tokenizer (name or folder) "
                   "instead of the embedding model's, which the store already counted with")
    p.add_argument("--docs", action="store_true", help="list document ids instead")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def count_with(store: StoreVersion, tokenizer_name: str) -> int:
    """Tokens of the whole corpus under another tokenizer: each distinct unit once, times its count."""
    from hyperscene.transforms.models import resolve_model
    from hyperscene.transforms.tokens import count_tokens, load_tokenizer

    try:
        folder, _ = resolve_model(tokenizer_name)
    except Exception:
        folder = tokenizer_name  # a plain tokenizer repo or folder, not a sentence-transformers model
    try:
        tokenizer = load_tokenizer(folder)
    except Exception as e:
        raise ModelNotFound(f"tokenizer {tokenizer_name!r} is not a local folder or in the Hugging Face cache ({type(e).__name__})") from None
    units = store.read("units", ["text", "occurrence_count"])
    texts, counts = units["text"].to_pylist(), units["occurrence_count"].to_pylist()
    total = 0
    for start in range(0, len(texts), 4096):
        total += sum(n * c for n, c in zip(count_tokens(tokenizer, texts[start : start + 4096]), counts[start : start + 4096]))
    return total


def summarise(store: StoreVersion, tokenizer: str | None = None) -> dict:
    m = store.manifest
    c = dict(m["counts"])
    tokens = count_with(store, tokenizer) if tokenizer else c.get("tokens", 0)
    units = c.get("units", 0)
    return {
        "store": store.store,
        "version": store.version,
        "format_version": m["format_version"],
        "documents": c.get("documents", 0),
        "input_bytes": c.get("input_bytes", 0),
        "tokens": tokens,
        "tokenizer": tokenizer or m["model"]["name"],
        "words": c.get("words", 0),
        "units": units,
        "distinct_units": c.get("distinct_units", 0),
        "exact_duplicate_occurrences": units - c.get("distinct_units", 0),
        "near_duplicate_units": c.get("near_duplicate_units", 0),
        "near_duplicate_occurrences": c.get("near_duplicate_occurrences", 0),
        "hyperword_stream_length": units,
        "tokens_per_hyperword": round(tokens / units, 2) if units else 0.0,
        "codebook_size": c.get("codebook_size", 0),
        "store_bytes": c.get("store_bytes", 0),
        "store_to_input": round(c.get("store_bytes", 0) / c["input_bytes"], 3) if c.get("input_bytes") else 0.0,
        "dead_letters": c.get("dead_letters", 0),
        "wall_seconds": m["timings"]["wall_seconds"],
        "model": m["model"]["name"],
    }


def render(s: dict) -> str:
    rows = [
        ("store", f"{s['store']} (version {s['version']}, format {s['format_version']})"),
        ("documents", human(s["documents"])),
        ("input bytes", human(s["input_bytes"])),
        ("tokens", f"{human(s['tokens'])} ({s['tokenizer']})"),
        ("words", human(s["words"])),
        ("units", f"{human(s['units'])} (sentences and clauses)"),
        ("distinct units", f"{human(s['distinct_units'])} ({human(s['exact_duplicate_occurrences'])} exact-duplicate occurrences collapsed)"),
        ("near-dup merges", f"{human(s['near_duplicate_units'])} units ({human(s['near_duplicate_occurrences'])} occurrences)"),
        ("hyperword stream", f"{human(s['hyperword_stream_length'])} hyperwords"),
        ("tokens/hyperword", f"{s['tokens_per_hyperword']:.2f}"),
        ("codebook size", human(s["codebook_size"])),
        ("store bytes", f"{human(s['store_bytes'])} ({s['store_to_input']:.3f} of input)"),
        ("dead letters", human(s["dead_letters"])),
        ("wall time", f"{s['wall_seconds']:.1f} s"),
    ]
    return "\n".join(f"{k:<18}{v}" for k, v in rows)


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    store = StoreVersion(args.store, args.version)
    if args.docs:
        for doc_id in sorted(store.read("documents", ["doc_id"])["doc_id"].to_pylist()):
            print(doc_id)
        return {}
    summary = summarise(store, args.tokenizer)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    sys.stdout.flush()
    return summary
