"""Time the embedding floor alone: encode a store's distinct units with one embedder, outside Beam.

    python benchmarks/embed_floor.py STORE                                  # bundled MiniLM, CPU
    python benchmarks/embed_floor.py STORE --orders tokens,characters --limit 20000 --repeats 3
    python benchmarks/embed_floor.py STORE --device cuda --batch-sizes 256,512,1024 --precisions float16,float32
    python benchmarks/embed_floor.py STORE --save-texts units.parquet       # the texts alone, to carry elsewhere
    python benchmarks/embed_floor.py units.parquet --limit 2000 --save-vectors cpu.npy   # a reference ...
    python benchmarks/embed_floor.py units.parquet --device cuda --reference cpu.npy     # ... to compare with

TEXTS is a store (its latest version's units table) or a Parquet file with a ``text`` column (as
``--save-texts`` writes it), so the floor can be measured on a machine that has the model and torch
but not the rest of the pipeline (a lent GPU). Each setting is timed ``--repeats`` times after a
warm-up and the median is reported. ``--orders``: ``tokens`` embeds as the pipeline does
(``vectorize.embed_texts``: batches of like token counts), ``characters`` with sentence-transformers' own
``encode`` (batches of like character counts); each row also says how many positions the model
computes per real token in its batches (padding included). With two precisions, the vectors of each are compared (cosine,
row by row) to say what half precision costs in fidelity; ``--reference`` compares the rows that ``--limit`` picked
with vectors saved elsewhere (float32 on a CPU, say) by ``--save-vectors`` with ``--limit``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np


def read_texts(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    if path.is_dir():
        from hyperscene.transforms.store.reader import StoreVersion

        return StoreVersion(str(path)).read("units", ["text"])["text"].to_pylist()
    return pq.read_table(path, columns=["text"])["text"].to_pylist()


def embedding(model, order: str, batch_size: int):
    """texts -> vectors in the batch order ``order`` names."""
    from hyperscene.transforms.heap import reusing_freed_memory
    from hyperscene.transforms.vectorize import embed_texts

    if order == "tokens":
        return lambda texts: embed_texts(model, texts, batch_size)
    if order == "characters":
        def encode(texts):
            with reusing_freed_memory():  # as embed_texts does: the two differ in their batches alone
                return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return encode
    raise SystemExit(f"--orders: unknown order {order!r} (tokens, characters)")


def positions_per_token(model, texts: list[str], order: str, batch_size: int) -> float | None:
    """Positions a transformer computes per real token in ``order``'s batches (1.0: no padding), as
    sentence-transformers orders them for ``characters`` (by length, longest first); None without a
    fast tokenizer."""
    from hyperscene.transforms.vectorize import counting_tokenizer

    tokenizer = counting_tokenizer(model)
    if tokenizer is None or not texts:
        return None
    tokens = np.array([len(e) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=True)])
    if model.max_seq_length and model.max_seq_length < np.iinfo(np.int64).max:
        tokens = np.minimum(tokens, int(model.max_seq_length))
    if order == "tokens":
        ordered = tokens[np.argsort(-tokens, kind="stable")]
    else:
        ordered = tokens[np.argsort([-len(t) for t in texts])]
    padded = sum(int(ordered[i : i + batch_size].max()) * len(ordered[i : i + batch_size])
                 for i in range(0, len(ordered), batch_size))
    return padded / int(tokens.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("texts", type=Path, help="a store, or a Parquet file with a text column")
    ap.add_argument("--model", default="bundled", help="model name or local folder (default: the bundled MiniLM)")
    ap.add_argument("--embedder", default="torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated (default: the device's default)")
    ap.add_argument("--precisions", default=None, help="torch embedder: float16,float32 (default: the device's)")
    ap.add_argument("--orders", default="tokens", help="comma-separated: tokens (the pipeline's embed_texts), "
                    "characters (sentence-transformers' encode); default: tokens")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only N texts, spread evenly over the input")
    ap.add_argument("--save-texts", type=Path, help="write the texts to this Parquet file and stop")
    ap.add_argument("--save-vectors", type=Path, help="write the first setting's vectors to this .npy file")
    ap.add_argument("--reference", type=Path, help="a .npy of vectors to compare each precision with, as --save-vectors wrote it with --limit")
    args = ap.parse_args()

    texts = read_texts(args.texts)
    if args.limit and args.limit < len(texts):
        texts = texts[:: len(texts) // args.limit][: args.limit]
    if args.save_texts:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Sorted, the texts compress to about two thirds: less to carry to another machine.
        pq.write_table(pa.table({"text": sorted(texts)}), args.save_texts, compression="zstd", compression_level=19)
        print(f"wrote {len(texts):,} texts to {args.save_texts} ({args.save_texts.stat().st_size / 2**20:.1f} MiB)")
        return

    from hyperscene.transforms.model_catalog import resolve_model
    from hyperscene.transforms.models import (
        default_batch_size, folder_for_embedder, load_embedder, load_sentence_transformer, torch_dtype)

    folder = folder_for_embedder(resolve_model(args.model)[0], args.embedder)
    batch_sizes = [int(b) for b in (args.batch_sizes or str(default_batch_size(args.device, args.embedder))).split(",")]
    # A reference for another machine (--save-vectors) is float32, whatever auto would pick here.
    precisions = (args.precisions or ("float32" if args.save_vectors else torch_dtype(args.device, args.embedder))).split(",")
    print(f"{len(texts):,} texts, {sum(map(len, texts)) / len(texts):.0f} characters on average; "
          f"{args.embedder} on {args.device}", flush=True)

    rows, vectors = [], {}
    for precision in precisions:
        if args.embedder == "torch":
            model = load_sentence_transformer(folder, args.device, precision)
        else:
            model = load_embedder(folder, args.embedder, args.device)
        for batch_size, order in itertools.product(batch_sizes, args.orders.split(",")):
            embed = embedding(model, order, batch_size)
            embed(texts[:4096])  # warm-up: kernels, allocator, threads
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = embed(texts)
                times.append(time.perf_counter() - start)
            vectors.setdefault(precision, out.astype(np.float32, copy=False))
            seconds = statistics.median(times)
            positions = positions_per_token(model, texts, order, batch_size)
            row = {"precision": precision, "batch_size": batch_size, "order": order, "seconds": round(seconds, 2),
                   "units_per_s": round(len(texts) / seconds), "repeats": [round(t, 2) for t in times],
                   "positions_per_token": round(positions, 3) if positions else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model

    print(f"\n{'precision':<10}{'batch':>7}{'order':>12}{'seconds':>9}{'units/s':>10}{'positions/token':>17}")
    for r in rows:
        print(f"{r['precision']:<10}{r['batch_size']:>7}{r['order']:>12}{r['seconds']:>9.2f}{r['units_per_s']:>10,}"
              f"{r['positions_per_token'] or '':>17}")
    if args.save_vectors:
        np.save(args.save_vectors, next(iter(vectors.values())))
    pairs = []
    if len(vectors) == 2:
        pairs.append((" vs ".join(vectors), *vectors.values()))
    if args.reference:
        reference = np.load(args.reference)
        rows = np.arange(0, len(texts), len(texts) // len(reference))[: len(reference)]  # as --limit picks them
        pairs += [(f"{p} vs {args.reference.name}", v[rows], reference) for p, v in vectors.items()]
    for name, a, b in pairs:
        cosine = (a * b).sum(axis=1)
        print(f"{name}: cosine per unit min {cosine.min():.5f}, median {np.median(cosine):.6f}, "
              f"share below 0.999 {np.mean(cosine < 0.999):.5f} ({len(cosine):,} units)")


if __name__ == "__main__":
    main()
