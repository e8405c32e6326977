"""``hyperscene encode`` against its embedding floor, and its agreement with the store on the store's own corpus.

    python benchmarks/compress_slice.py --tokens 1M --keep /tmp/s1m --no-floor
    python benchmarks/encode_floor.py /tmp/s1m ../shared/corpora/en-gutenberg --tokens 1M

Encodes the input with :class:`hyperscene.transforms.encoder.Encoder` (the model loaded once,
before the clock starts), then embeds the input's distinct unit texts alone with the same model
object, batch size and precision: the floor, the least any encoder of these units could take.
Encode and floor alternate ``--repeats`` times; the ratio total/floor is given per pair and as the
median. Also where encode's time went (segment, embed, candidates, scenes) and, for documents the
store holds, how many units got their stored hyperword and semantic id.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def read_documents(corpus: Path, tokens: int | None) -> list[tuple[str, str]]:
    """(doc_id, text) as compress reads them; with ``tokens``, the slice compress_slice.py takes."""
    import shutil
    import tempfile

    from hyperscene.transforms.inputs import discover
    from hyperscene.transforms.read import read_input_file

    if tokens is None:
        return [(r["doc_id"], r["text"]) for f in discover([str(corpus)]) for tag, r in read_input_file(f) if tag == "documents"]
    from compress_slice import make_slice

    root = Path(tempfile.mkdtemp(prefix="encode-slice-"))
    try:
        make_slice(corpus, tokens, root)
        return [(r["doc_id"], r["text"]) for f in discover([str(root)]) for tag, r in read_input_file(f) if tag == "documents"]
    finally:
        shutil.rmtree(root)


def agreement(store_path: str, docs) -> dict:
    """Units whose encoding gives the stored hyperword and semantic id, over documents the store holds."""
    from hyperscene.transforms.store.reader import StoreVersion
    from hyperscene.transforms.unit_ids import unit_hex

    stored = defaultdict(list)
    rows = StoreVersion(store_path).read("occurrences", ["doc_id", "position", "unit_id", "hyperword", "semantic_id"])
    for o in sorted(rows.to_pylist(), key=lambda o: (o["doc_id"], o["position"])):
        stored[o["doc_id"]].append(o)
    counts = {"documents": 0, "units": 0, "same_unit": 0, "same_hyperword": 0, "same_semantic_id": 0}
    for doc in docs:
        if doc.doc_id not in stored:
            continue
        counts["documents"] += 1
        if len(stored[doc.doc_id]) != len(doc.units):
            counts["documents_segmented_otherwise"] = counts.get("documents_segmented_otherwise", 0) + 1
        for o, u in zip(stored[doc.doc_id], doc.units):
            counts["units"] += 1
            counts["same_unit"] += unit_hex(o["unit_id"]) == u.unit_id
            counts["same_hyperword"] += o["hyperword"] == u.hyperword
            counts["same_semantic_id"] += tuple(o["semantic_id"]) == u.semantic_id
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("corpus", type=Path, help="the input to encode (a folder or file as compress takes)")
    ap.add_argument("--tokens", help="only the slice compress_slice.py takes (e.g. 1M); default: all of it")
    ap.add_argument("--repeats", type=int, default=2, help="encode/floor pairs (default 2)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()

    from compress_slice import parse_tokens

    from hyperscene.transforms.encoder import Encoder

    docs_in = read_documents(args.corpus, parse_tokens(args.tokens) if args.tokens else None)
    started = time.perf_counter()
    encoder = Encoder.from_store(args.store)
    load = time.perf_counter() - started
    list(encoder.encode_many([("warm-up", docs_in[0][1][:20_000])]))  # spaCy and torch warm up, as a worker's first batch
    print(f"{len(docs_in):,} documents, {sum(len(t.encode()) for _, t in docs_in):,} bytes; encoder loaded in {load:.1f} s",
          flush=True)

    pairs, runs = [], []
    for repeat in range(args.repeats):
        encoder.counts = dict.fromkeys(encoder.counts, 0)
        encoder.seconds = dict.fromkeys(encoder.seconds, 0.0)
        encoder._candidate_vectors.clear()
        encoder._seen.clear()
        started = time.perf_counter()
        docs = list(encoder.encode_many(docs_in))
        total = time.perf_counter() - started
        texts = list(dict.fromkeys(u.text for d in docs for u in d.units))
        seconds = dict(encoder.seconds)  # the floor's own embedding is not encode's
        started = time.perf_counter()
        encoder._embed(texts)
        floor = time.perf_counter() - started
        pairs.append(total / floor)
        runs.append({"total_s": round(total, 2), "floor_s": round(floor, 2), "ratio": round(total / floor, 3),
                     "seconds": {k: round(v, 2) for k, v in seconds.items()}, "counts": dict(encoder.counts),
                     "distinct_units": len(texts)})
        print(f"run {repeat + 1}: encode {total:.1f} s ({len(texts) / total:,.0f} distinct units/s), floor {floor:.1f} s, "
              f"ratio {total / floor:.3f}; {json.dumps(runs[-1]['seconds'])}", flush=True)
    result = {"store": args.store, "corpus": str(args.corpus), "tokens": args.tokens, "load_s": round(load, 2),
              "runs": runs, "median_ratio": round(statistics.median(pairs), 3), "agreement": agreement(args.store, docs)}
    a = result["agreement"]
    print(f"median total/floor {result['median_ratio']}; counts {json.dumps(runs[-1]['counts'])}")
    if a["units"]:
        print(f"agreement over {a['documents']:,} stored documents, {a['units']:,} units: unit ids {a['same_unit'] / a['units']:.4%}, "
              f"hyperwords {a['same_hyperword'] / a['units']:.4%}, semantic ids {a['same_semantic_id'] / a['units']:.4%}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
