"""Training probe: what is the compressed corpus worth for training a language model?

    python benchmarks/train_probe.py --corpus ../shared/corpora/en-gutenberg --out en.json
    python benchmarks/train_probe.py --corpus ../shared/corpora/ru-classics --lang ru --out ru.json
    python benchmarks/train_probe.py --corpus DIR --quick --out quick.json   # tiny: checks it runs end to end

The same small causal transformer over bytes (256 byte tokens, so bits per byte are exact) is trained
from scratch, at an equal budget of training positions, on each variant of the same training
documents:

- ``raw``: the training documents as they are;
- ``distilled``: the same documents with exact and near-duplicate units dropped, as
  ``hyperscene export --format text`` drops them (its own ``Deduper`` and ``distil``), counted over
  the training documents only, in doc_id order;
- ``hyperwords``: the distilled text with each dropped unit replaced by one extra token, its
  hyperword (vocabulary 256 + codebook size), so the model still sees that a repeated passage of that
  kind stood there, at the cost of one position instead of its bytes.

Every variant is scored on the same bytes: windows of the raw text of held-out documents (the
export's ``--test-fraction`` rule, a hash of the doc_id), which no variant trains on. A hyperword
model's byte probabilities are its softmax over the 256 byte tokens alone. Also reported at the end
of training: bits per byte on the held-out text with the units whose group (canonical unit) occurs
in the training documents dropped ("new text"), which separates learning from recalling repeats.

Steps: pick whole files of the corpus, smallest first (``--order name`` for name order), until the
training and held-out byte targets are met (the split is the export's hash rule on the file path), compress them with the product
(``hyperscene compress``, ``--embedder static`` by default for speed; the static tables are
distilled once and cached), rebuild each document from the store and check its sha256, build the
variants, then train every variant with every seed (the seed sets the initialisation and the data
order). Held-out bits per byte are measured at regular intervals; the report gives each variant's
final value (mean, std and min-max over seeds) and the training positions it needed to first reach
the raw model's final value of the same seed (interpolated between evaluations; "not reached" if
never).

The learning rate (default 1e-3) was chosen on seed 0 of the English default slice, raw variant only
(5e-4, 1e-3, 2e-3, 4e-3 tried); the default seeds are 1, 2, 3. The same hyperparameters serve every
variant and corpus.

Prints a markdown table; ``--out`` writes every number (curves included) as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "en-gutenberg"
VARIANTS = ("raw", "distilled", "hyperwords")

# Defaults sized for the shared 2-core development machine: a model of about 1.9M parameters, 393,216 training
# positions (one to two epochs of about 200 kB of raw training text), nine runs (three variants, three seeds).
DEFAULTS = dict(train_bytes=200_000, held_out_bytes=30_000, test_fraction=0.2, budget=393_216, eval_bytes=16_384,
                evals=6, d_model=192, layers=4, heads=4, context=256, batch=16, lr=1e-3)
QUICK = dict(train_bytes=20_000, held_out_bytes=5_000, test_fraction=0.25, budget=6_144, eval_bytes=2_048, evals=2, d_model=64,
             layers=2, heads=2, context=64, batch=8)


def parse_size(s: str) -> int:
    scale = {"k": 1_000, "K": 1_000, "M": 1_000_000, "m": 1_000_000}
    return int(float(s[:-1]) * scale[s[-1]]) if s[-1] in scale else int(float(s))


def log(msg: str) -> None:
    print(f"[train_probe {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data ---------------------------------------------------------------------------------------

def pick_files(corpus: Path, train_bytes: int, held_out_bytes: int, fraction: float, order: str = "size") -> list[Path]:
    """Whole files in ``order`` (size: smallest first, ties by name; or name) until both targets are met; a file goes to the side the export's
    split rule puts it on (doc_fraction of its relative path, the doc_id of a text file)."""
    from hyperscene.transforms.export import doc_fraction

    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv"
                   and any(s in (".txt", ".md", ".jsonl", ".gz") for s in p.suffixes))
    if order == "size":
        files.sort(key=lambda p: (p.stat().st_size, p.as_posix()))
    chosen, have = [], {True: 0, False: 0}
    target = {True: held_out_bytes, False: train_bytes}
    for f in files:
        held = doc_fraction(f.relative_to(corpus).as_posix()) < fraction
        if have[held] < target[held]:
            chosen.append(f)
            have[held] += f.stat().st_size
        if all(have[k] >= target[k] for k in have):
            break
    return chosen


def build_store(corpus: Path, files: list[Path], store: Path, lang: str, compress_args: list[str]) -> float:
    from hyperscene.pipelines import compress

    work = Path(tempfile.mkdtemp(prefix="train-probe-slice-"))
    try:
        for f in files:
            target = work / f.relative_to(corpus)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        start = time.monotonic()
        compress.run([str(work), "--out", str(store), "--lang", lang, *compress_args])
        return time.monotonic() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_documents(store_path: Path) -> tuple[list[dict], int]:
    """Every live document of the latest version, rebuilt and checked against its sha256:
    ``doc_id``, ``prefix``, ``pieces`` (unit text + separator), ``unit_ids``, ``hyperwords``."""
    from hyperscene.transforms.store.documents import matches_sha256
    from hyperscene.transforms.store.reader import StoreVersion

    store = StoreVersion(str(store_path))
    documents = store.read("documents")
    occ = store.read("occurrences", ["doc_id", "position", "unit_id", "separator", "hyperword"])
    occ = occ.sort_by([("doc_id", "ascending"), ("position", "ascending")])
    units = store.read("units", ["unit_id", "text"])
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    by_doc: dict[str, tuple[list, list, list]] = {}
    for d, u, s, h in zip(*(occ[c].to_pylist() for c in ("doc_id", "unit_id", "separator", "hyperword"))):
        pieces, ids, hws = by_doc.setdefault(d, ([], [], []))
        pieces.append(text_of[u] + s)
        ids.append(u)
        hws.append(h)
    out = []
    for doc in sorted(documents.to_pylist(), key=lambda r: r["doc_id"]):
        if doc.get("deleted"):
            continue
        pieces, ids, hws = by_doc.get(doc["doc_id"], ([], [], []))
        if not matches_sha256(doc, doc["prefix"] + "".join(pieces)):
            raise SystemExit(f"document {doc['doc_id']!r} does not rebuild to its sha256")
        out.append({"doc_id": doc["doc_id"], "prefix": doc["prefix"], "pieces": pieces, "unit_ids": ids, "hyperwords": hws})
    codebook = max(store.read("hyperwords", ["hyperword"]).num_rows,
                   1 + max((h for d in out for h in d["hyperwords"]), default=0))
    return out, codebook


def build_variants(store_path: Path, fraction: float) -> dict:
    """The token streams of every variant, the held-out evaluation bytes and the figures about them."""
    import numpy as np

    from hyperscene.transforms import export as ex
    from hyperscene.transforms.store.reader import StoreVersion

    docs, codebook = read_documents(store_path)
    held = ex.held_out_documents([d["doc_id"] for d in docs], fraction)
    train = [d for d in docs if d["doc_id"] not in held]
    test = [d for d in docs if d["doc_id"] in held]
    if not train or not test:
        raise SystemExit(f"need training and held-out documents; got {len(train)} and {len(test)} (try another --test-fraction)")
    provenance = StoreVersion(str(store_path)).read("provenance", ["unit_id", "canonical_unit_id"])
    deduper = ex.Deduper(dict(zip(provenance["unit_id"].to_pylist(), provenance["canonical_unit_id"].to_pylist())))

    def as_bytes(text: str):
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    raw, distilled, hyper = [], [], []
    units_in = units_out = 0
    for d in train:  # doc_id order, as the export walks them
        keep = deduper.keep(d["unit_ids"])
        units_in, units_out = units_in + len(keep), units_out + sum(keep)
        raw.append(as_bytes(d["prefix"] + "".join(d["pieces"])))
        distilled.append(as_bytes(ex.distil(d["prefix"], d["pieces"], keep)))
        parts = [as_bytes(d["prefix"])]
        for piece, k, hw in zip(d["pieces"], keep, d["hyperwords"]):
            parts.append(as_bytes(piece) if k else np.array([256 + hw], dtype=np.int32))
        hyper.append(np.concatenate(parts))
    # Held-out text: raw, and with the units whose group the training documents hold dropped.
    test_raw, test_new = [], []
    for d in test:
        keep = deduper.keep(d["unit_ids"])
        test_raw.append(as_bytes(d["prefix"] + "".join(d["pieces"])))
        test_new.append(as_bytes(ex.distil(d["prefix"], d["pieces"], keep)))
    streams = {"raw": np.concatenate(raw), "distilled": np.concatenate(distilled), "hyperwords": np.concatenate(hyper)}
    return {
        "streams": streams,
        "vocab": {"raw": 256, "distilled": 256, "hyperwords": 256 + codebook},
        "test_raw": np.concatenate(test_raw),
        "test_new": np.concatenate(test_new),
        "info": {
            "train_documents": [d["doc_id"] for d in train],
            "held_out_documents": [d["doc_id"] for d in test],
            "codebook_size": codebook,
            "train_bytes_raw": int(streams["raw"].size),
            "train_bytes_distilled": int(streams["distilled"].size),
            "distilled_share_dropped": round(1 - streams["distilled"].size / streams["raw"].size, 4),
            "hyperword_stand_ins": int((streams["hyperwords"] >= 256).sum()),
            "train_units_in": units_in,
            "train_units_out": units_out,
            "held_out_bytes": int(sum(t.size for t in test_raw)),
            "held_out_new_bytes": int(sum(t.size for t in test_new)),
        },
    }


def eval_windows(stream, n_bytes: int, context: int):
    """Evenly spaced windows of context+1 tokens covering about ``n_bytes`` predicted bytes."""
    import numpy as np
    import torch

    n = max(1, min(n_bytes // context, (stream.size - 1) // context))
    starts = np.linspace(0, stream.size - context - 1, n).astype(np.int64)
    return torch.from_numpy(np.stack([stream[s:s + context + 1] for s in starts]).astype(np.int64))


# --- model --------------------------------------------------------------------------------------

def make_model(vocab: int, d: int, layers: int, heads: int, context: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, 2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
            self.apply(self._init)

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
            for block in self.blocks:
                h = block(h)
            return self.head(self.ln(h))

    return GPT()


def bits_per_byte(model, windows, device: str, amp, batch: int = 32) -> float:
    """Mean negative log2-likelihood of each window's bytes after the first, over the 256 byte
    logits only (a hyperword model's extra tokens never occur in raw text)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = windows[i:i + batch].to(device)
            with amp():
                logits = model(w[:, :-1])
            logp = F.log_softmax(logits.float()[..., :256], dim=-1)
            nll = -logp.gather(-1, w[:, 1:, None]).squeeze(-1)
            total += nll.sum().item()
            count += nll.numel()
    model.train()
    return total / count / math.log(2)


def train_one(stream, vocab: int, seed: int, cfg: dict, eval_sets: dict, device: str, label: str) -> dict:
    import contextlib

    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    T, B = cfg["context"], cfg["batch"]
    model = make_model(vocab, cfg["d_model"], cfg["layers"], cfg["heads"], T).to(device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.95))
    steps = max(1, cfg["budget"] // (B * T))
    warmup = max(1, steps // 20)

    def lr_at(step):
        if step < warmup:
            return cfg["lr"] * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    if cfg["precision"] == "bf16":
        def amp():
            return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    else:
        amp = contextlib.nullcontext

    data = torch.from_numpy(stream.astype(np.int64))

    def batches():
        """Epochs of non-overlapping windows from a random offset, in a random order."""
        while True:
            offset = int(rng.integers(0, T))
            starts = np.arange(offset, data.numel() - T - 1, T)
            if starts.size == 0:
                starts = np.array([0])
            rng.shuffle(starts)
            for i in range(0, starts.size - B + 1 if starts.size >= B else 1, B):
                idx = starts[i:i + B]
                if idx.size < B:
                    idx = rng.choice(starts, B)
                yield torch.stack([data[s:s + T + 1] for s in idx])

    eval_at = sorted({max(1, round(steps * (k + 1) / cfg["evals"])) for k in range(cfg["evals"])})
    curve = []
    it = batches()
    start = last_log = time.monotonic()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = next(it).to(device)
        with amp():
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step + 1 in eval_at:
            bpb = bits_per_byte(model, eval_sets["raw"], device, amp)
            tokens = (step + 1) * B * T
            curve.append({"tokens": tokens, "bpb": round(bpb, 5)})
            elapsed = time.monotonic() - start
            log(f"{label}: {tokens:,}/{steps * B * T:,} tokens, train loss {loss.item() / math.log(2):.3f} bits, "
                f"held-out {bpb:.4f} bpb, {tokens / elapsed:,.0f} tokens/s, {elapsed:.0f} s")
            last_log = time.monotonic()
        elif time.monotonic() - last_log > 60:
            elapsed = time.monotonic() - start
            log(f"{label}: step {step + 1}/{steps}, {(step + 1) * B * T / elapsed:,.0f} tokens/s, {elapsed:.0f} s")
            last_log = time.monotonic()
    new_bpb = bits_per_byte(model, eval_sets["new"], device, amp) if eval_sets.get("new") is not None else None
    return {"seed": seed, "params": params, "steps": steps, "tokens": steps * B * T, "curve": curve,
            "final_bpb": curve[-1]["bpb"], "final_bpb_new_text": None if new_bpb is None else round(new_bpb, 5),
            "epochs": round(steps * B * T / stream.size, 3), "seconds": round(time.monotonic() - start, 1)}


def tokens_to_reach(curve: list[dict], target: float) -> float | None:
    """Training positions at which the held-out curve first reaches ``target``, linearly
    interpolated between evaluations (from the first point if it is already below)."""
    prev = None
    for point in curve:
        if point["bpb"] <= target + 1e-9:
            if prev is None or prev["bpb"] == point["bpb"]:
                return float(point["tokens"])
            frac = (prev["bpb"] - target) / (prev["bpb"] - point["bpb"])
            return prev["tokens"] + frac * (point["tokens"] - prev["tokens"])
        prev = point
    return None


def summarise(runs: dict[str, list[dict]]) -> dict:
    import statistics

    raw_final = {r["seed"]: r["final_bpb"] for r in runs["raw"]}
    out = {}
    for variant, rs in runs.items():
        finals = [r["final_bpb"] for r in rs]
        news = [r["final_bpb_new_text"] for r in rs if r["final_bpb_new_text"] is not None]
        reach = [tokens_to_reach(r["curve"], raw_final[r["seed"]]) for r in rs]
        reached = [t for t in reach if t is not None]
        out[variant] = {
            "tokens": rs[0]["tokens"],
            "epochs": rs[0]["epochs"],
            "bpb_mean": round(statistics.mean(finals), 4),
            "bpb_std": round(statistics.stdev(finals), 4) if len(finals) > 1 else 0.0,
            "bpb_min": min(finals), "bpb_max": max(finals),
            "bpb_new_text_mean": round(statistics.mean(news), 4) if news else None,
            "bpb_new_text_std": round(statistics.stdev(news), 4) if len(news) > 1 else 0.0,
            "tokens_to_raw_final": [None if t is None else round(t) for t in reach],
            "tokens_to_raw_final_mean": round(statistics.mean(reached)) if len(reached) == len(reach) else None,
            "reached": f"{len(reached)}/{len(reach)}",
            "seconds_mean": round(statistics.mean(r["seconds"] for r in rs), 1),
        }
    return out


def table(summary: dict, info: dict) -> str:
    lines = ["| variant | train bytes (tokens) | epochs | held-out bpb, mean ± std (min-max) | held-out new text bpb | "
             "tokens to raw's final bpb (per seed) |", "|---|---|---|---|---|---|"]
    size = {"raw": info["train_bytes_raw"], "distilled": info["train_bytes_distilled"],
            "hyperwords": info["train_bytes_distilled"] + info["hyperword_stand_ins"]}
    for v, s in summary.items():
        reach = ", ".join("not reached" if t is None else f"{t / 1e3:.0f}k" for t in s["tokens_to_raw_final"])
        lines.append(f"| {v} | {size[v]:,} | {s['epochs']} | {s['bpb_mean']:.4f} ± {s['bpb_std']:.4f} "
                     f"({s['bpb_min']:.4f}-{s['bpb_max']:.4f}) | {s['bpb_new_text_mean']:.4f} ± {s['bpb_new_text_std']:.4f} | "
                     f"{reach} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--lang", default="en", help="compress --lang (default en; ru for ru-classics)")
    ap.add_argument("--store", type=Path, help="reuse this store (or build it here if absent) instead of a temporary one")
    ap.add_argument("--train-bytes", help=f"training documents' bytes to pick, whole files (default {DEFAULTS['train_bytes']:,})")
    ap.add_argument("--held-out-bytes", help=f"held-out documents' bytes to pick (default {DEFAULTS['held_out_bytes']:,})")
    ap.add_argument("--order", choices=["size", "name"], default="size",
                    help="which whole files to pick first: the smallest (default; more documents in a small slice) or by name")
    ap.add_argument("--test-fraction", type=float, help=f"export's held-out rule (default {DEFAULTS['test_fraction']})")
    ap.add_argument("--budget", help=f"training positions per run, every variant (default {DEFAULTS['budget']:,})")
    ap.add_argument("--eval-bytes", help=f"held-out bytes scored at each evaluation (default {DEFAULTS['eval_bytes']:,})")
    ap.add_argument("--evals", type=int, help=f"evaluations per run (default {DEFAULTS['evals']})")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1 2 3 (seed 0 was used for tuning)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--d-model", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--context", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                    help="autocast dtype for the model's matmuls (default bf16; losses are float32)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine two threads ran 20 times slower, waiting on each other)")
    ap.add_argument("--quick", action="store_true", help="tiny slice, model and budget: checks it runs end to end")
    ap.add_argument("--out", type=Path, help="write every number as JSON here")
    ap.add_argument("compress_args", nargs="*", help="extra arguments for hyperscene compress after -- "
                                                     "(default: --embedder static)")
    args = ap.parse_args(argv)

    cfg = dict(DEFAULTS, **(QUICK if args.quick else {}))
    for key in ("train_bytes", "held_out_bytes", "budget", "eval_bytes"):
        if getattr(args, key) is not None:
            cfg[key] = parse_size(getattr(args, key))
    for key in ("test_fraction", "evals", "d_model", "layers", "heads", "context", "batch", "lr"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["precision"] = args.precision
    seeds = args.seeds if args.seeds is not None else [1, 2, 3]
    compress_args = args.compress_args or ["--embedder", "static"]

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    tmp = None
    store = args.store
    compress_s = None
    files: list[str] = []
    try:
        if store is None or not (store.exists() and any(store.glob("v*/manifest.json"))):
            if store is None:
                tmp = Path(tempfile.mkdtemp(prefix="train-probe-"))
                store = tmp / "store"
            picked = pick_files(args.corpus, cfg["train_bytes"], cfg["held_out_bytes"], cfg["test_fraction"], args.order)
            files = [p.relative_to(args.corpus).as_posix() for p in picked]
            log(f"compressing {len(picked)} files, {sum(p.stat().st_size for p in picked):,} bytes, into {store}")
            compress_s = build_store(args.corpus, picked, store, args.lang, compress_args)
            log(f"compressed in {compress_s:.0f} s")
        data = build_variants(store, cfg["test_fraction"])
        info = data["info"]
        log(f"training documents {len(info['train_documents'])} ({info['train_bytes_raw']:,} bytes raw, "
            f"{info['train_bytes_distilled']:,} distilled: {info['distilled_share_dropped']:.1%} dropped; "
            f"{info['hyperword_stand_ins']:,} hyperword stand-ins), held-out {len(info['held_out_documents'])} "
            f"({info['held_out_bytes']:,} bytes, {info['held_out_new_bytes']:,} new text)")
        eval_sets = {"raw": eval_windows(data["test_raw"], cfg["eval_bytes"], cfg["context"]),
                     "new": eval_windows(data["test_new"], cfg["eval_bytes"], cfg["context"])}
        runs: dict[str, list[dict]] = {v: [] for v in ["raw", *[v for v in args.variants if v != "raw"]]}
        for seed in seeds:
            for variant in runs:
                runs[variant].append(train_one(data["streams"][variant], data["vocab"][variant], seed, cfg, eval_sets,
                                               args.device, f"{variant} seed {seed}"))
                log(f"{variant} seed {seed}: final held-out {runs[variant][-1]['final_bpb']:.4f} bpb "
                    f"(new text {runs[variant][-1]['final_bpb_new_text']:.4f}) in {runs[variant][-1]['seconds']:.0f} s")
        summary = summarise(runs)
        result = {
            "corpus": args.corpus.name, "lang": args.lang, "command": " ".join(["python", "benchmarks/train_probe.py", *(argv if argv is not None else sys.argv[1:])]),
            "config": cfg, "order": args.order, "seeds": seeds, "device": args.device, "threads": args.threads, "torch": torch.__version__,
            "compress_args": compress_args, "files": files, "compress_seconds": None if compress_s is None else round(compress_s, 1),
            "data": info, "params": {v: rs[0]["params"] for v, rs in runs.items()},
            "summary": summary, "runs": runs, "wall_seconds": round(time.monotonic() - t0, 1),
        }
        md = table(summary, info)
        print(md)
        print(f"params: {result['params']}; wall {result['wall_seconds']:.0f} s")
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
