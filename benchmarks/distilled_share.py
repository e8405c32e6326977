"""What the distilled export (`hyperscene export STORE --format text`) keeps of a store, and what it drops.

    python benchmarks/distilled_share.py STORE [--top 15]

Replays the export's own decision (transforms/export.Deduper, default options: corpus scope, no
minimum length) over every document in doc_id order and counts tokens in and out with the store's
tokenizer. Each dropped occurrence is put in one class: an exact repeat (its unit text was seen
before), a near-duplicate (a unit merged into a canonical one, by its provenance method), or a
canonical unit whose group a merged member opened earlier in reading order. Prints
the most often dropped texts of each class, so a reader can judge whether they are truly repeated.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def breakdown(store_path: str, top: int = 15) -> dict:
    from hyperscene.pipelines.export import assemble_documents, document_batches, live_documents, read_units
    from hyperscene.pipelines.export import OCCURRENCE_COLUMNS
    from hyperscene.transforms.export import Deduper
    from hyperscene.transforms.store.reader import StoreVersion

    store = StoreVersion(store_path)
    units = read_units(store, None)
    provenance = store.read("provenance", ["unit_id", "canonical_unit_id", "method"])
    canonical_of = dict(zip(provenance["unit_id"].to_pylist(), provenance["canonical_unit_id"].to_pylist()))
    method_of = dict(zip(provenance["unit_id"].to_pylist(), provenance["method"].to_pylist()))
    deduper = Deduper(canonical_of)
    seen_ids: set[str] = set()
    tokens = Counter()
    dropped = {"exact": Counter(), "near": Counter()}
    for batch, occurrences in document_batches(store, live_documents(store), OCCURRENCE_COLUMNS):
        for _, _, unit_ids in assemble_documents(batch, occurrences, units.text_of):
            counts = [units.tokens_of[u] for u in unit_ids]
            for unit_id, n, keep in zip(unit_ids, counts, deduper.keep(unit_ids, counts)):
                tokens["in"] += n
                if keep:
                    tokens["out"] += n
                elif unit_id in seen_ids:
                    tokens["exact"] += n
                    dropped["exact"][unit_id] += 1
                else:
                    kind = method_of.get(unit_id, "canonical after a member")
                    tokens[kind] += n
                    dropped["near"][unit_id] += 1
                seen_ids.add(unit_id)
    return {
        "store": store_path,
        "tokens_in": tokens["in"],
        "tokens_out": tokens["out"],
        "kept_share": round(tokens["out"] / tokens["in"], 4) if tokens["in"] else None,
        "dropped_tokens": {k: v for k, v in tokens.items() if k not in ("in", "out")},
        "dropped_occurrences": {k: sum(c.values()) for k, c in dropped.items()},
        "most_dropped": {k: [{"times": n, "text": units.text_of[u], "merged_into": units.text_of.get(canonical_of[u])}
                             if u in canonical_of else {"times": n, "text": units.text_of[u]}
                             for u, n in c.most_common(top)] for k, c in dropped.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--top", type=int, default=15, help="most often dropped texts to show per class (default: 15)")
    args = ap.parse_args()
    print(json.dumps(breakdown(args.store, args.top), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
