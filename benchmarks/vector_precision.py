"""What storing vectors in int8 instead of float16 does to near-duplicate decisions.

    python benchmarks/vector_precision.py STORE          # a store compressed with --vectors float16

A refresh decides near-duplicates of its new units against the stored vectors, so the stored
encoding is what its decisions rest on. This runs the same decision (transforms/near_dup: every
hyperword's units grouped at the store's threshold, with its word check) on the store's float16
vectors and on the same vectors encoded as int8 and read back, and compares the merges: how many
each makes, and how many (member, canonical) pairs differ. Also prints the mean and largest change
of a cosine between a unit and its hyperword's other units, the bytes of each encoding, and with
``--show N`` N of the differing pairs with their texts and both cosines, to read by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--version", type=int)
    ap.add_argument("--show", type=int, default=0, metavar="N", help="print N of the pairs that differ, with their texts")
    args = ap.parse_args()

    from hyperscene.transforms.near_dup import group_near_duplicates
    from hyperscene.transforms.store.reader import StoreVersion
    from hyperscene.transforms.store.vector_codec import decode, vector_table

    store = StoreVersion(str(args.store), args.version)
    cfg = store.manifest["config"]
    vectors_table = store.read("vectors")
    if "scale" in vectors_table.column_names:
        sys.exit("the store's vectors are int8 already: compress it with --vectors float16")
    units = store.read("units", ["unit_id", "text", "occurrence_count"])
    text = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    count = dict(zip(units["unit_id"].to_pylist(), units["occurrence_count"].to_pylist()))
    ids = vectors_table["unit_id"].to_pylist()
    hyperwords = vectors_table["hyperword"].to_numpy()
    half = decode(vectors_table)
    int8_table = vector_table(vectors_table["unit_id"], vectors_table["hyperword"], half, "int8")
    eight = decode(int8_table)

    started = time.perf_counter()
    merges = {"float16": set(), "int8": set()}
    row_of = {u: i for i, u in enumerate(ids)}
    drift, largest = [], 0.0
    for hw in np.unique(hyperwords):
        rows = np.flatnonzero(hyperwords == hw)
        group_ids = [ids[i] for i in rows]
        texts = [text[u] for u in group_ids]
        counts = [count.get(u, 1) for u in group_ids]
        for name, matrix in (("float16", half), ("int8", eight)):
            found, _ = group_near_duplicates(group_ids, matrix[rows], counts, cfg["near_dup_threshold"], texts=texts,
                                             lang=cfg["lang"], check=cfg.get("near_dup_check", "words"))
            merges[name] |= {(group_ids[m], group_ids[c]) for m, c, _, _ in found}
        sample = rows[:200]
        delta = np.abs(half[sample] @ half[sample].T - eight[sample] @ eight[sample].T)
        drift.append(float(delta.mean()))
        largest = max(largest, float(delta.max()))
    a, b = merges["float16"], merges["int8"]
    for member, canonical in sorted(a ^ b)[: args.show]:
        i, j = row_of[member], row_of[canonical]
        print(f"only {'float16' if (member, canonical) in a else 'int8'}: cosine {float(half[i] @ half[j]):.4f} (float16) "
              f"{float(eight[i] @ eight[j]):.4f} (int8)\n  {text[member]!r}\n  {text[canonical]!r}", file=sys.stderr)
    bytes_of = {name: int(t.nbytes) for name, t in (("float16", vectors_table), ("int8", int8_table))}
    print(json.dumps({
        "store": str(args.store), "version": store.version, "model": store.manifest["model"].get("name"),
        "embedder": cfg["embedder"], "units": len(ids), "dimension": int(half.shape[1]), "threshold": cfg["near_dup_threshold"],
        "merges_float16": len(a), "merges_int8": len(b), "merges_change": round((len(b) - len(a)) / max(len(a), 1), 5),
        "pairs_only_float16": len(a - b), "pairs_only_int8": len(b - a),
        "pairs_differing_share": round(len(a ^ b) / max(len(a), 1), 5),
        "cosine_change_mean": round(float(np.mean(drift)), 6), "cosine_change_max": round(largest, 5),
        "table_bytes_in_memory": bytes_of, "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
