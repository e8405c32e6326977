"""Measure scene segmentation (Pk, WindowDiff) and gist fidelity on Choi-style documents.

    python benchmarks/segmentation.py --lang en --embedder torch                  # report (seed 1)
    python benchmarks/segmentation.py --lang ru --embedder static
    python benchmarks/segmentation.py --lang en --seed 0 --grid                   # tune level 1
    python benchmarks/segmentation.py --lang en --seed 0 --grid --same-book 3 --segments 12   # tune levels >= 2

Documents are built as in Choi (2000): each is ``--segments`` passages (10), each passage a run of
3 to 11 consecutive units taken at a random place of a different book of ../shared/corpora
(en-gutenberg without its Project Gutenberg header and footer, or ru-classics; the first and last
tenth of each book are skipped). Passages are cut into units by the project's own segmenter (the
units of ``compress --lang``) and embedded by the project's own embedder. The true level-1
boundaries are the passage boundaries.

Segmentation: the level-1 cuts of :func:`hyperscene.transforms.scenes.cut_points` against the
truth, as Pk (Beeferman et al. 1999) and WindowDiff (Pevzner and Hearst 2002), with k = half the
document's mean true segment length (rounded, at least 1), averaged over documents; lower is
better. The baseline cuts every N units, N = the document's mean true segment length (rounded).

Higher levels: with ``--same-book R``, runs of R consecutive passages come from one book (from
different places of it), and the level-2 scenes of
:func:`~hyperscene.transforms.scenes.build_scene_tree` are scored the same way against the run
boundaries (k and the baseline's N from the mean run length); a document whose tree stops below
level 2 counts as one level-2 scene.

Gist fidelity, per level of the scene trees: the mean cosine between the embedding of a scene's
gist (its gist units' texts joined by spaces, embedded as one text) and the scene's full-text
embedding, defined as its centroid (the token-weighted mean of its unit embeddings, normalised):
the model truncates long inputs, so embedding a long scene whole would only see its start.
Baseline: the scene's first ``gist_size`` units, embedded the same way. Only scenes with more units
than the gist holds count (for the others gist and baseline are both the whole scene).

``--grid`` first evaluates a grid of settings on the same documents and embeddings (level 1; and
levels >= 2 with ``--same-book``), next to the best settings of alternatives measured and not
chosen: the same cut without centring, a TextTiling-style cut, and the same cut on vectors
reshaped first (whitened, reweighted, principal components removed, word TF-IDF added). Tune on one seed (0), report on
another (the default, 1).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / ".." / "shared" / "corpora"
CORPUS = {"en": "en-gutenberg", "ru": "ru-classics"}
# Project Gutenberg's header and footer (licence boilerplate) are the same in every book: passages
# taken from them would be near-duplicates across "different" books.
PG_START = re.compile(r"^\*\*\* ?START OF.*$", re.MULTILINE | re.IGNORECASE)
PG_END = re.compile(r"^\*\*\* ?END OF", re.MULTILINE | re.IGNORECASE)
EDGE = 0.1  # skip the first and last tenth of each book: front matter, tables of contents, notes
WINDOW_CHARS_PER_UNIT = 400  # text read per passage unit; a window that holds too few units is an error


def book_bodies(lang: str) -> list[tuple[str, str]]:
    """(name, text) of each book of the language's corpus, in name order, without exact duplicates."""
    folder = (CORPORA / CORPUS[lang]).resolve()
    if not folder.is_dir():
        sys.exit(f"corpus folder {folder} does not exist (expected ../shared/corpora beside the repository)")
    books, seen = [], set()
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        start, end = PG_START.search(text), PG_END.search(text)
        body = text[start.end() if start else 0 : end.start() if end else len(text)]
        digest = hashlib.sha256(body.encode()).hexdigest()
        if digest not in seen:  # en-gutenberg holds one book under two names
            seen.add(digest)
            books.append((path.name, body))
    return books


def sample_documents(books, segmenter, n_docs: int, segments: int, same_book: int, lengths: tuple[int, int], seed: int):
    """Choi-style documents: lists of passages, each a list of unit texts from one book.

    Runs of ``same_book`` consecutive passages share a book; neighbouring runs never do. A passage
    starts at a random place of a book's middle; the first unit there (maybe half a sentence) and
    the last one read (maybe cut by the window's end) are never taken.
    """
    rng = np.random.default_rng(seed)
    runs = segments // same_book
    if runs > len(books):
        sys.exit(f"{runs} runs of passages need that many different books; the corpus has {len(books)}")
    plans = []
    for _ in range(n_docs):
        chosen = rng.choice(len(books), size=runs, replace=False)
        plans.append([(int(b), int(rng.integers(lengths[0], lengths[1] + 1)), float(rng.random()))
                      for b in chosen for _ in range(same_book)])
    windows = {}
    for plan in plans:
        for b, length, where in plan:
            body = books[b][1]
            lo, hi = int(len(body) * EDGE), int(len(body) * (1 - EDGE))
            start = lo + int(where * max(hi - lo, 1))
            windows[(b, length, where)] = body[start : start + WINDOW_CHARS_PER_UNIT * (length + 2)]
    keys = list(windows)
    units = dict(zip(keys, (seg.units for seg in segmenter.segment_many([windows[k] for k in keys]))))
    docs = []
    for plan in plans:
        passages = []
        for key in plan:
            found = units[key][1:-1]
            if len(found) < key[1]:
                sys.exit(f"a window of {books[key[0]][0]} held {len(found)} whole units, fewer than {key[1]}: "
                         "raise WINDOW_CHARS_PER_UNIT")
            passages.append(found[: key[1]])
        docs.append(passages)
    return docs


# --- scores ------------------------------------------------------------------------------------


def segment_ids(starts, n: int) -> np.ndarray:
    is_start = np.zeros(n, dtype=np.int64)
    is_start[np.asarray(starts, dtype=np.int64)] = 1
    return np.cumsum(is_start)


def pk(ref, hyp, n: int, k: int) -> float:
    """Share of unit pairs k apart on whose being in one segment ref and hyp disagree."""
    r, h = segment_ids(ref, n), segment_ids(hyp, n)
    return float(np.mean((r[:-k] == r[k:]) != (h[:-k] == h[k:])))


def window_diff(ref, hyp, n: int, k: int) -> float:
    """Share of windows of k units in which ref and hyp count a different number of boundaries."""
    r, h = segment_ids(ref, n), segment_ids(hyp, n)
    return float(np.mean((r[k:] - r[:-k]) != (h[k:] - h[:-k])))


def scores(ref, hyp, n: int) -> tuple[float, float]:
    k = max(1, round(n / len(ref) / 2))
    return pk(ref, hyp, n, k), window_diff(ref, hyp, n, k)


def mean_scores(truths, hyps, sizes) -> tuple[float, float]:
    return tuple(float(x) for x in np.mean([scores(t, h, n) for t, h, n in zip(truths, hyps, sizes)], axis=0))


def every_n(truths, sizes):
    return [list(range(0, n, max(1, round(n / len(t))))) for t, n in zip(truths, sizes)]


def level_starts(scenes, level: int) -> list[int]:
    """First units of a tree's scenes at ``level``, or of its root if the tree stops lower."""
    top = min(level, max(s.level for s in scenes))
    return [s.first for s in scenes if s.level == top]


# --- alternatives measured for --grid, not used by hyperscene -------------------------------------


def texttiling_cuts(vectors, window: int, threshold: float, min_len: int, max_len: int) -> list[int]:
    """TextTiling (Hearst 1997) on embeddings: cosine between the means of ``window`` items on each
    side of every gap, depth of each local minimum, cuts at dips deeper than mean + threshold * std
    of the document's dips, chosen jointly by dynamic programming within [min_len, max_len] (gaps
    that are not minima are used only when the maximum length forces a cut)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v - v.mean(axis=0)
    n = len(v)
    if n < 2 * min_len and n <= max_len:
        return [0]
    prefix = np.zeros((n + 1, v.shape[1]))
    np.cumsum(v, axis=0, out=prefix[1:])
    gaps = np.arange(1, n)
    left = prefix[gaps] - prefix[np.maximum(gaps - window, 0)]
    right = prefix[np.minimum(gaps + window, n)] - prefix[gaps]
    norm = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    s = np.einsum("ij,ij->i", norm(left), norm(right))
    up_left, up_right = s.copy(), s.copy()
    for i in range(1, len(s)):
        if s[i - 1] >= s[i]:
            up_left[i] = up_left[i - 1]
    for i in range(len(s) - 2, -1, -1):
        if s[i + 1] >= s[i]:
            up_right[i] = up_right[i + 1]
    depth = up_left + up_right - 2 * s
    minimum = np.ones(len(s), dtype=bool)
    minimum[1:] &= s[:-1] >= s[1:]
    minimum[:-1] &= s[1:] >= s[:-1]
    dips = depth[minimum]
    gains = depth - (dips.mean() + threshold * dips.std())
    forced = 1.0 + float(np.abs(gains).sum())
    gain = np.zeros(n + 1)
    gain[1:n] = np.where(minimum, gains, gains - forced)
    best, back = np.full(n + 1, -np.inf), np.zeros(n + 1, dtype=np.int64)
    best[0] = 0.0
    for end in range(min_len, n + 1):
        lo, hi = max(0, end - max_len), end - min_len
        cand = best[lo : hi + 1] + gain[lo : hi + 1]
        k = int(np.argmax(cand))
        best[end], back[end] = cand[k], lo + k
    starts, end = [], n
    while end > 0:
        end = int(back[end])
        starts.append(end)
    return starts[::-1]


def uncentred_cuts(vectors, penalty: float, min_len: int, max_len: int) -> list[int]:
    from hyperscene.transforms.scenes import best_segmentation

    return best_segmentation(np.asarray(vectors, dtype=np.float64), min_len, max_len, penalty)


# --- grids -------------------------------------------------------------------------------------

PENALTIES = (0.75, 1.0, 1.25, 1.4, 1.5, 1.6, 1.75, 2.0)


def grid_level1(vectors, truths, cfg) -> dict[str, list[dict]]:
    from hyperscene.transforms.scenes import cut_points

    sizes = [len(v) for v in vectors]
    out = {"chosen": [], "uncentred": [], "texttiling": []}
    for penalty, min_units in itertools.product(PENALTIES, (2, 3, 4)):
        c = replace(cfg, penalty=penalty, min_units=min_units)
        for name, cut in (("chosen", lambda v: cut_points(v, c, 1)),
                          ("uncentred", lambda v: uncentred_cuts(v, penalty, min_units, c.max_units))):
            p, w = mean_scores(truths, [cut(v) for v in vectors], sizes)
            out[name].append({"penalty": penalty, "min": min_units, "pk": p, "windowdiff": w})
    for window, threshold, min_units in itertools.product((3, 4, 5, 6, 8), (-0.75, -0.5, -0.25, 0.0, 0.25), (3, 4)):
        hyps = [texttiling_cuts(v, window, threshold, min_units, cfg.max_units) for v in vectors]
        p, w = mean_scores(truths, hyps, sizes)
        out["texttiling"].append({"window": window, "threshold": threshold, "min": min_units, "pk": p, "windowdiff": w})
    return {k: sorted(v, key=lambda r: (r["pk"], r["windowdiff"])) for k, v in out.items()}


def grid_level2(vectors, tokens, truths2, cfg) -> list[dict]:
    from hyperscene.transforms.scenes import build_scene_tree

    sizes = [len(v) for v in vectors]
    rows = []
    for penalty, min_children, max_children in itertools.product(PENALTIES, (2, 3), (8, 12, 16)):
        c = replace(cfg, scene_penalty=penalty, min_children=min_children, max_children=max_children)
        hyps = [level_starts(build_scene_tree(v, t, c), 2) for v, t in zip(vectors, tokens)]
        p, w = mean_scores(truths2, hyps, sizes)
        rows.append({"penalty": penalty, "min": min_children, "max": max_children, "pk": p, "windowdiff": w})
    return sorted(rows, key=lambda r: (r["pk"], r["windowdiff"]))


def _unit_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def _lexical(texts: list[str]) -> np.ndarray:
    """TF-IDF vectors of the units' words (5-letter prefixes of words over 3 letters, in two or
    more units of the document), normalised and centred."""
    import math
    from collections import Counter

    from hyperscene.transforms.near_dup_verify import words

    ws = [[w[:5] for w in words(t) if len(w) > 3] for t in texts]
    df = Counter(w for u in ws for w in set(u))
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= 2))}
    m = np.zeros((len(texts), max(len(vocab), 1)))
    for i, u in enumerate(ws):
        for w in u:
            if w in vocab:
                m[i, vocab[w]] += math.log(len(texts) / df[w])
    return _unit_rows(m) - _unit_rows(m).mean(axis=0)


def grid_variants(vectors, tokens, texts, truths, cfg) -> list[dict]:
    """Reshaped item vectors before the same cut, each at every penalty: measured, not used."""
    from hyperscene.transforms.scenes import best_segmentation, centred

    corpus = np.concatenate(vectors).astype(np.float64)
    mean, spread = corpus.mean(axis=0), corpus.std(axis=0) + 1e-9
    _, _, components = np.linalg.svd(corpus - mean, full_matrices=False)

    def without_top(c, k):
        top = components[:k]
        return c - (c @ top.T) @ top

    def weighted(c, t, power):
        w = np.maximum(t, 1).astype(np.float64) ** power
        return c * (w / w.mean())[:, None]

    variants = {
        "centred (hyperscene)": lambda v, t, x: centred(v),
        "centred, unit length": lambda v, t, x: _unit_rows(centred(v)),
        "centred / document spread": lambda v, t, x: centred(v) / (centred(v).std(axis=0) + 1e-6),
        "corpus-whitened, centred": lambda v, t, x: centred((v - mean) / spread),
        "centred, sqrt-token weights": lambda v, t, x: weighted(centred(v), t, 0.5),
        "centred, token weights": lambda v, t, x: weighted(centred(v), t, 1.0),
        "centred, top 1 component out": lambda v, t, x: without_top(centred(v), 1),
        "centred, top 10 components out": lambda v, t, x: without_top(centred(v), 10),
        "centred + word TF-IDF (0.5)": lambda v, t, x: np.hstack(
            [centred(v), 0.5 * np.linalg.norm(centred(v), axis=1).mean() * _lexical(x)]),
    }
    sizes = [len(v) for v in vectors]
    rows = []
    for name, reshape in variants.items():
        items = [reshape(v, t, x) for v, t, x in zip(vectors, tokens, texts)]
        for penalty in PENALTIES:
            hyps = [best_segmentation(i, cfg.min_units, cfg.max_units, penalty) for i in items]
            p, w = mean_scores(truths, hyps, sizes)
            rows.append({"variant": name, "penalty": penalty, "pk": p, "windowdiff": w})
    best = {}
    for r in sorted(rows, key=lambda r: (r["pk"], r["windowdiff"])):
        best.setdefault(r["variant"], r)
    return list(best.values())


def print_rows(title: str, rows: list[dict], limit: int) -> None:
    print(title)
    keys = [k for k in rows[0] if k not in ("pk", "windowdiff")]
    print("  " + " ".join(f"{k:>9}" for k in keys) + f" {'Pk':>7} {'WD':>7}")
    for r in rows[:limit]:
        print("  " + " ".join(f"{r[k]:>9}" for k in keys) + f" {r['pk']:>7.4f} {r['windowdiff']:>7.4f}")


# --- gist fidelity -----------------------------------------------------------------------------


def gist_fidelity(trees, doc_texts, gist_size: int, encode) -> list[dict]:
    """Per level: scenes counted, mean cosine of gist and of first-units baseline to the centroid."""
    rows = []  # (level, gist text, baseline text, centroid)
    for scenes, texts in zip(trees, doc_texts):
        for scene in scenes:
            if scene.unit_count > gist_size:
                rows.append((scene.level, " ".join(texts[p] for p in scene.gist),
                             " ".join(texts[scene.first : scene.first + gist_size]), scene.centroid))
    if not rows:
        return []
    distinct = sorted({t for r in rows for t in r[1:3]})
    vec = dict(zip(distinct, encode(distinct)))
    table = []
    for level in sorted({r[0] for r in rows}):
        at = [r for r in rows if r[0] == level]
        table.append({
            "level": level,
            "scenes": len(at),
            "gist": round(float(np.mean([vec[g] @ c for _, g, _, c in at])), 4),
            "first_units": round(float(np.mean([vec[b] @ c for _, _, b, c in at])), 4),
        })
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", default="en", choices=sorted(CORPUS))
    ap.add_argument("--embedder", default="torch", choices=["torch", "static", "openvino"])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--docs", type=int, default=150, help="documents (default: 150)")
    ap.add_argument("--segments", type=int, default=10, help="passages per document (default: 10, as Choi)")
    ap.add_argument("--passage-units", default="3-11", help="units per passage, MIN-MAX (default: 3-11, Choi's sentences)")
    ap.add_argument("--same-book", type=int, default=1, metavar="R",
                    help="runs of R consecutive passages from one book; R > 1 also scores level 2 (default: 1)")
    ap.add_argument("--seed", type=int, default=1, help="document sample (default: 1; defaults were tuned on 0)")
    ap.add_argument("--grid", action="store_true", help="first evaluate a grid of settings (tuning)")
    args = ap.parse_args()
    lo, _, hi = args.passage_units.partition("-")
    try:
        lengths = (int(lo), int(hi or lo))
    except ValueError:
        lengths = (0, -1)
    if not 1 <= lengths[0] <= lengths[1]:
        ap.error(f"--passage-units {args.passage_units!r} must be MIN-MAX with 1 <= MIN <= MAX")
    if args.same_book < 1 or args.segments % args.same_book or args.segments < 2 or args.docs < 1:
        ap.error("--segments must be at least 2 and a multiple of --same-book, --docs at least 1")

    from hyperscene.transforms.model_catalog import resolve_model

    from hyperscene.transforms.models import folder_for_embedder, load_embedder
    from hyperscene.transforms.scenes import SceneConfig, build_scene_tree, cut_points
    from hyperscene.transforms.segment import Segmenter
    from hyperscene.transforms.tokens import count_tokens, load_tokenizer

    started = clock = time.perf_counter()
    books = book_bodies(args.lang)
    docs = sample_documents(books, Segmenter(args.lang), args.docs, args.segments, args.same_book, lengths, args.seed)
    print(f"{len(docs)} documents of {args.segments} passages ({lengths[0]}-{lengths[1]} units, runs of {args.same_book} "
          f"from one book) from {len(books)} books of {CORPUS[args.lang]}, seed {args.seed}: {time.perf_counter() - clock:.1f} s",
          file=sys.stderr)

    base = resolve_model(args.model)[0]
    model = load_embedder(folder_for_embedder(base, args.embedder), args.embedder)
    tokenizer = load_tokenizer(base)

    def encode(texts):
        return model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)

    doc_texts = [[u for passage in doc for u in passage] for doc in docs]
    distinct = sorted({u for texts in doc_texts for u in texts})
    clock = time.perf_counter()
    vec = dict(zip(distinct, encode(distinct)))
    print(f"embedded {len(distinct)} distinct units: {time.perf_counter() - clock:.1f} s", file=sys.stderr)
    tok = dict(zip(distinct, count_tokens(tokenizer, distinct)))
    vectors = [np.stack([vec[u] for u in texts]) for texts in doc_texts]
    tokens = [np.array([tok[u] for u in texts]) for texts in doc_texts]
    sizes = [len(v) for v in vectors]
    truths = [list(np.cumsum([0, *map(len, doc)])[:-1]) for doc in docs]
    truths2 = [t[:: args.same_book] for t in truths]

    cfg = SceneConfig()
    if args.grid:
        clock = time.perf_counter()
        g1 = grid_level1(vectors, truths, cfg)
        print_rows(f"\nlevel 1, scenes.cut_points (max {cfg.max_units}), best first:", g1["chosen"], 12)
        print_rows("level 1, the same without centring, best:", g1["uncentred"], 3)
        print_rows("level 1, TextTiling-style (centred), best:", g1["texttiling"], 3)
        print_rows("level 1, reshaped vectors before the same cut, best penalty of each:",
                   grid_variants(vectors, tokens, doc_texts, truths, cfg), 20)
        if args.same_book > 1:
            print_rows("level 2 against the runs of one book, best first:", grid_level2(vectors, tokens, truths2, cfg), 12)
        print(f"grid: {time.perf_counter() - clock:.1f} s", file=sys.stderr)

    clock = time.perf_counter()
    hyps = [cut_points(v, cfg, 1) for v in vectors]
    trees = [build_scene_tree(v, t, cfg) for v, t in zip(vectors, tokens)]
    figures = {"level1": mean_scores(truths, hyps, sizes), "level1_baseline": mean_scores(truths, every_n(truths, sizes), sizes)}
    if args.same_book > 1:
        figures["level2"] = mean_scores(truths2, [level_starts(s, 2) for s in trees], sizes)
        figures["level2_baseline"] = mean_scores(truths2, every_n(truths2, sizes), sizes)
    print(f"scenes: {time.perf_counter() - clock:.1f} s", file=sys.stderr)
    gist_rows = gist_fidelity(trees, doc_texts, cfg.gist_size, encode)

    print(f"\n{args.lang}, {args.embedder} embedder, {len(docs)} documents, seed {args.seed}, {time.perf_counter() - started:.0f} s; {cfg}")
    print(f"units per true segment {np.mean(sizes) / np.mean([len(t) for t in truths]):.2f}, "
          f"per level-1 scene {np.mean(sizes) / np.mean([len(h) for h in hyps]):.2f}")
    print(f"{'':<30} {'Pk':>7} {'WindowDiff':>10}")
    for key, label in (("level1", "level 1: scenes.cut_points"), ("level1_baseline", "level 1: every N units"),
                       ("level2", "level 2: build_scene_tree"), ("level2_baseline", "level 2: every N units")):
        if key in figures:
            print(f"{label:<30} {figures[key][0]:>7.4f} {figures[key][1]:>10.4f}")
    print(f"\n{'level':>5} {'scenes':>7} {'gist cos':>9} {'first-units cos':>16}")
    for r in gist_rows:
        print(f"{r['level']:>5} {r['scenes']:>7} {r['gist']:>9.4f} {r['first_units']:>16.4f}")
    print(json.dumps({"lang": args.lang, "embedder": args.embedder, "docs": len(docs), "seed": args.seed,
                      "segments": args.segments, "same_book": args.same_book,
                      **{k: {"pk": round(v[0], 4), "windowdiff": round(v[1], 4)} for k, v in figures.items()},
                      "gist": gist_rows}))


if __name__ == "__main__":
    main()
