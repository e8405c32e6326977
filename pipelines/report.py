"""``hyperscene report``: one self-contained HTML page about a store version.

The page holds the store's summary and, as inline SVG drawn here, the plots a reader needs to judge
a compression: cluster sizes, near-duplicate similarities against the threshold, tokens per record
and compression by level, a 2-D map of the hyperwords, the largest near-duplicate groups and a few
documents' scene trees. It fetches nothing: no scripts, fonts or images from anywhere, so it opens
offline and can be mailed or archived as one file. Hover text is SVG ``<title>`` and HTML ``title``,
which every browser shows without JavaScript. Every text from the store is escaped.

The figures come from :mod:`hyperscene.transforms.report_data`; this module reads the store and
draws.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import time

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.cliutil import human, visible
from hyperscene.transforms import report_data as rd
from hyperscene.transforms.errors import InvalidOption, StoreError
from hyperscene.transforms.store.reader import StoreVersion

DEFAULT_MAX_POINTS = 2000
DEFAULT_GROUPS = 10
DEFAULT_TREES = 3
MAX_TREE_NODES = 150  # scenes drawn per document, breadth first from the root
MAX_CHILDREN = 6  # children drawn per scene; the rest are counted in one line
SCORE_BIN = 0.005  # width of the similarity histogram's bins (cosine)
TEXT_CHARS = 240  # unit and gist texts are cut to this many characters on the page
SAMPLES_PER_GROUP = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene report",
        description="Write one self-contained HTML page about a store version (no network fetches: plots are inline "
                    "SVG, hover text needs no JavaScript): its summary, cluster sizes, near-duplicate similarities "
                    "with the threshold, tokens per record and compression by level, a 2-D map of the hyperwords, the "
                    "largest near-duplicate groups and a few documents' scene trees.")
    p.add_argument("store", help="store directory")
    p.add_argument("--out", required=True, help="HTML file to write: new, or replaced with --overwrite; never inside the store")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, metavar="N",
                   help=f"hyperwords drawn on the map, the largest first (default: {DEFAULT_MAX_POINTS}; the page says "
                        "how many were left out)")
    p.add_argument("--groups", type=int, default=DEFAULT_GROUPS, metavar="N",
                   help=f"near-duplicate groups listed, the largest first (default: {DEFAULT_GROUPS})")
    p.add_argument("--trees", type=int, default=DEFAULT_TREES, metavar="N",
                   help=f"scene trees drawn, of the documents with the most units (default: {DEFAULT_TREES})")
    p.add_argument("--doc", action="append", metavar="ID", help="draw this document's scene tree instead (repeatable)")
    return p


# ---------------------------------------------------------------------------------------------------
# Reading the store


def threshold_of(store: StoreVersion) -> tuple[float, str]:
    """The near-duplicate threshold the version was compressed with, and where it comes from."""
    value = store.manifest.get("config", {}).get("near_dup_threshold")
    if value is not None:
        return float(value), "the manifest's config"
    # Only for a manifest without it: near_dup imports Beam's ML modules and torch (seconds).
    from hyperscene.transforms.models import DEFAULT_MODEL
    from hyperscene.transforms.near_dup import default_threshold

    model = store.manifest.get("model", {})
    embedder = model.get("embedder", "torch")
    return default_threshold(model.get("name", DEFAULT_MODEL), embedder), f"the default for the {embedder} embedder"


def live_documents(store: StoreVersion):
    """The documents table without rows marked deleted (format 3 and later; older stores have no
    such column and no deleted documents)."""
    import pyarrow.compute as pc

    docs = store.read("documents")
    if "deleted" in docs.column_names:
        docs = docs.filter(pc.invert(pc.fill_null(docs["deleted"], False)))
    return docs


def _centroids(column):
    """A list<float> column of equal-length vectors -> (rows, dim) float32 array."""
    import numpy as np
    import pyarrow.compute as pc

    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():
        raise StoreError("hyperwords.centroid holds vectors of different lengths: the store is damaged (run hyperscene verify)")
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(column), int(lengths[0]))


def gather(store: StoreVersion, max_points: int = DEFAULT_MAX_POINTS, groups: int = DEFAULT_GROUPS,
           trees: int = DEFAULT_TREES, doc_ids: list[str] | None = None) -> dict:
    """Everything the page shows, as plain Python and numpy values."""
    import numpy as np

    from hyperscene.transforms.store.documents import read_table
    from hyperscene.pipelines.inspect_store import document_scenes, summarise

    summary = summarise(store)
    data: dict = {"summary": summary, "manifest": store.manifest}

    hw = store.read("hyperwords", ["hyperword", "centroid", "unit_count", "occurrence_count", "representative_text"])
    unit_counts = hw["unit_count"].to_numpy()
    data["cluster_bins"] = rd.size_bins(unit_counts)
    data["cluster_spread"] = rd.spread(unit_counts[unit_counts > 0])
    data["empty_clusters"] = int((unit_counts == 0).sum())

    live = unit_counts > 0
    ids, sizes, occ = hw["hyperword"].to_numpy()[live], unit_counts[live], hw["occurrence_count"].to_numpy()[live]
    texts = [t for t, keep in zip(hw["representative_text"].to_pylist(), live) if keep]
    projection = rd.pca_2d(_centroids(hw["centroid"])[live])
    shown = np.lexsort((ids, -sizes))[:max_points]  # the largest first, ties by hyperword id
    data["map"] = {
        "explained": projection.explained, "total": len(ids),
        "points": [{"hyperword": int(ids[i]), "x": float(projection.coords[i, 0]), "y": float(projection.coords[i, 1]),
                    "units": int(sizes[i]), "occurrences": int(occ[i]), "text": texts[i] or ""} for i in shown],
    }

    units = store.read("units", ["token_count", "occurrence_count"])
    scenes = store.read("scenes", ["level", "token_count"]) if store.files("scenes") else None
    data["tokens_by_level"] = rd.tokens_by_level(
        units["token_count"].to_numpy(), units["occurrence_count"].to_numpy(),
        scenes["level"].to_numpy() if scenes is not None else np.zeros(0, np.int32),
        scenes["token_count"].to_numpy() if scenes is not None else np.zeros(0, np.int64))
    data["compression"] = rd.compression_rows(summary["levels"])

    prov = store.read("provenance", ["unit_id", "canonical_unit_id", "score"])
    scores = prov["score"].to_numpy()
    threshold, source = threshold_of(store)
    data["near_dup"] = {"scores": scores, "threshold": threshold, "threshold_source": source}
    members, canonicals = prov["unit_id"].to_pylist(), prov["canonical_unit_id"].to_pylist()
    involved = sorted(set(members) | set(canonicals))
    rows = read_table(store, "units", ["unit_id", "occurrence_count"], {"unit_id": involved}) if involved else None
    occurrences = dict(zip(rows["unit_id"].to_pylist(), rows["occurrence_count"].to_pylist())) if rows is not None else {}
    top = rd.near_dup_groups(members, canonicals, scores, occurrences, groups, SAMPLES_PER_GROUP)
    wanted = sorted({g["canonical_unit_id"] for g in top} | {s["unit_id"] for g in top for s in g["samples"]})
    text_rows = read_table(store, "units", ["unit_id", "text"], {"unit_id": wanted}) if wanted else None
    text_of = dict(zip(text_rows["unit_id"].to_pylist(), text_rows["text"].to_pylist())) if text_rows is not None else {}
    for g in top:
        g["text"] = text_of.get(g["canonical_unit_id"], "")
        for s in g["samples"]:
            s["text"] = text_of.get(s["unit_id"], "")
    data["groups"] = {"top": top, "total": len({c for c in canonicals})}

    docs = live_documents(store)
    if doc_ids:
        chosen = list(dict.fromkeys(doc_ids))
    else:
        ranked = sorted(zip(docs["doc_id"].to_pylist(), docs["unit_count"].to_pylist()), key=lambda d: (-d[1], d[0]))
        chosen = [d for d, n in ranked if n > 0][:trees]
    data["trees"] = []
    for doc_id in chosen:
        doc, doc_scenes = document_scenes(store, doc_id)
        data["trees"].append({"doc": doc, "scenes": doc_scenes})
    data["documents"] = docs.num_rows
    return data


# ---------------------------------------------------------------------------------------------------
# Text


def clean(text: str | None, limit: int = TEXT_CHARS) -> str:
    """One readable line: whitespace runs as one space, control characters as \\xNN, cut to
    ``limit`` characters with an ellipsis. Not escaped: :func:`esc` does that where it is written."""
    text = " ".join((text or "").split())
    text = visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def num(v: float) -> str:
    """A tick or value label: integers with thousands separators, others with up to 3 significant digits."""
    if v == 0:
        return "0"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


# ---------------------------------------------------------------------------------------------------
# SVG


class Scale:
    """Value -> pixel along one axis, linear or log10."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False):
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi == lo:
            hi = lo + 1
        self.lo, self.hi, self.a, self.b, self.log = lo, hi, a, b, log

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(max(v, 10 ** self.lo))
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self) -> list[float]:
        if self.log:
            lo, hi = math.floor(self.lo + 1e-9), math.ceil(self.hi - 1e-9)
            powers = [10.0 ** k for k in range(lo, hi + 1)]
            if len(powers) <= 3:  # a narrow range: 1-2-5 steps read better than powers alone
                powers = [m * p for p in powers for m in (1, 2, 5)]
            return [t for t in powers if self.lo - 1e-9 <= math.log10(t) <= self.hi + 1e-9]
        return nice_ticks(self.lo, self.hi)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 times a power of ten) from lo to hi."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


class Plot:
    """One SVG chart: a plot area with margins, axes drawn from two scales, shapes added in order."""

    def __init__(self, width: int = 620, height: int = 300, left: int = 70, right: int = 20, top: int = 20,
                 bottom: int = 56):
        self.width, self.height = width, height
        self.x0, self.x1, self.y0, self.y1 = left, width - right, height - bottom, top
        self.parts: list[str] = []

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def axes(self, x: Scale | None, y: Scale, xlabel: str, ylabel: str, xticks: list[tuple[float, str]] | None = None) -> None:
        out = [f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x1}" y2="{self.y0}"/>',
               f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x0}" y2="{self.y1}"/>']
        for t in y.ticks():
            py = y(t)
            out.append(f'<line class="grid" x1="{self.x0}" y1="{py:.1f}" x2="{self.x1}" y2="{py:.1f}"/>'
                       f'<text class="tick" x="{self.x0 - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(num(t))}</text>')
        if xticks is None and x is not None:
            xticks = [(x(t), num(t)) for t in x.ticks()]
        for px, label in xticks or []:
            out.append(f'<line class="axis" x1="{px:.1f}" y1="{self.y0}" x2="{px:.1f}" y2="{self.y0 + 4}"/>'
                       f'<text class="tick" x="{px:.1f}" y="{self.y0 + 17}" text-anchor="middle">{esc(label)}</text>')
        mid_x, mid_y = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        out.append(f'<text class="label" x="{mid_x:.1f}" y="{self.height - 10}" text-anchor="middle">{esc(xlabel)}</text>')
        out.append(f'<text class="label" transform="translate(16 {mid_y:.1f}) rotate(-90)" text-anchor="middle">{esc(ylabel)}</text>')
        self.parts[:0] = out  # under the data

    def svg(self, label: str) -> str:
        return (f'<svg viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" role="img" '
                f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(self.parts) + "</svg>")


def category_bars(labels: list[str], values: list[float], hovers: list[str], xlabel: str, ylabel: str,
                  log: bool = False, notes: list[str] | None = None) -> str:
    """Bars over categories; ``notes`` (optional) are printed above each bar."""
    plot = Plot()
    top = max(values, default=0) or 1
    y = Scale(min([v for v in values if v > 0], default=1) / 2 if log else 0, top * (1.15 if notes else 1.05),
              plot.y0, plot.y1, log)
    step = (plot.x1 - plot.x0) / max(len(labels), 1)
    width = step * 0.7
    every = max(1, math.ceil(len(labels) / 14))  # keep category labels from overlapping
    xticks = []
    for i, (label, value, hover) in enumerate(zip(labels, values, hovers)):
        cx = plot.x0 + step * (i + 0.5)
        if value > 0:
            py = y(value)
            plot.add(f'<rect class="bar" x="{cx - width / 2:.1f}" y="{py:.1f}" width="{width:.1f}" '
                     f'height="{plot.y0 - py:.1f}"><title>{esc(hover)}</title></rect>')
            if notes:
                plot.add(f'<text class="note" x="{cx:.1f}" y="{py - 5:.1f}" text-anchor="middle">{esc(notes[i])}</text>')
        if i % every == 0:
            xticks.append((cx, label))
    plot.axes(None, y, xlabel, ylabel, xticks)
    return plot.svg(ylabel)


def score_histogram(scores, threshold: float) -> str:
    lo, hi = rd.score_range(scores, threshold, SCORE_BIN)
    edges, counts = rd.histogram(scores, lo, hi, SCORE_BIN)
    plot = Plot()
    x = Scale(lo, hi, plot.x0, plot.x1)
    y = Scale(0, max(int(counts.max()) if len(counts) else 0, 1) * 1.1, plot.y0, plot.y1)
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        if c:
            plot.add(f'<rect class="bar" x="{x(a) + 0.5:.1f}" y="{y(c):.1f}" width="{max(x(b) - x(a) - 1, 1):.1f}" '
                     f'height="{plot.y0 - y(c):.1f}"><title>{esc(f"cosine {a:.3f}–{b:.3f}: {int(c):,} merged units")}</title></rect>')
    tx = x(threshold)
    plot.add(f'<line class="threshold" x1="{tx:.1f}" y1="{plot.y0}" x2="{tx:.1f}" y2="{plot.y1}">'
             f'<title>{esc(f"threshold {threshold:g}")}</title></line>'
             + (f'<text class="threshold-label" x="{tx + 5:.1f}" y="{plot.y1 + 12}">' if tx + 120 < plot.x1 else
                f'<text class="threshold-label" x="{tx - 5:.1f}" y="{plot.y1 + 12}" text-anchor="end">')
             + f'threshold {esc(f"{threshold:g}")}</text>')
    plot.axes(x, y, "cosine similarity of a merged unit to its canonical unit", "merged units")
    return plot.svg("near-duplicate similarity histogram")


def level_boxes(rows: list[dict]) -> str:
    """Per level: whisker p10-p90, box p25-p75, median line, mean dot, on a log scale of tokens."""
    plot = Plot()
    positive = [v for r in rows for v in (r["p10"], r["min"]) if v > 0]
    low = max(min(positive, default=1) / 1.5, 0.5)
    y = Scale(low, max([r["max"] * 1.5 for r in rows] + [low * 10]), plot.y0, plot.y1, log=True)
    step = (plot.x1 - plot.x0) / max(len(rows), 1)
    half = min(step * 0.25, 30)
    xticks = []
    for i, r in enumerate(rows):
        cx = plot.x0 + step * (i + 0.5)
        name = "units (hyperwords)" if r["level"] == 0 else "scenes"
        hover = (f"level {r['level']} {name}: {r['count']:,} records, mean {r['mean']:,.1f} tokens, median {num(r['median'])}, "
                 f"p10–p90 {num(r['p10'])}–{num(r['p90'])}, min {num(r['min'])}, max {num(r['max'])}")
        if r["count"]:
            plot.add(f'<g><title>{esc(hover)}</title>'
                     f'<line class="whisker" x1="{cx:.1f}" y1="{y(r["p10"]):.1f}" x2="{cx:.1f}" y2="{y(r["p90"]):.1f}"/>'
                     f'<rect class="box" x="{cx - half:.1f}" y="{y(r["p75"]):.1f}" width="{2 * half:.1f}" '
                     f'height="{max(y(r["p25"]) - y(r["p75"]), 1):.1f}"/>'
                     f'<line class="median" x1="{cx - half:.1f}" y1="{y(r["median"]):.1f}" x2="{cx + half:.1f}" y2="{y(r["median"]):.1f}"/>'
                     f'<circle class="mean" cx="{cx:.1f}" cy="{y(r["mean"]):.1f}" r="3.5"/></g>')
        xticks.append((cx, f"L{r['level']}"))
    plot.axes(None, y, "level (L0: one hyperword per unit occurrence; L1 and up: scenes)", "tokens per record (log)", xticks)
    return plot.svg("tokens per record by level")


def hyperword_map(points: list[dict], explained: tuple[float, float]) -> str:
    plot = Plot(width=1000, height=620, left=60, bottom=50)
    if not points:
        return plot.svg("hyperword map")
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    pad_x, pad_y = (max(xs) - min(xs)) * 0.04 or 1, (max(ys) - min(ys)) * 0.04 or 1
    x = Scale(min(xs) - pad_x, max(xs) + pad_x, plot.x0, plot.x1)
    y = Scale(min(ys) - pad_y, max(ys) + pad_y, plot.y0, plot.y1)
    biggest = max(p["units"] for p in points)
    # Area proportional to the unit count; the largest cluster gets a radius of 18 px.
    for p in sorted(points, key=lambda p: -p["units"]):  # small ones last, on top, so each stays hoverable
        r = max(2.0, 18 * math.sqrt(p["units"] / biggest))
        hover = f"hyperword {p['hyperword']}: {p['units']:,} distinct units, {p['occurrences']:,} occurrences\n{clean(p['text'])}"
        plot.add(f'<circle class="point" cx="{x(p["x"]):.1f}" cy="{y(p["y"]):.1f}" r="{r:.1f}"><title>{esc(hover)}</title></circle>')
    plot.axes(x, y, f"principal component 1 ({explained[0]:.1%} of the variance)",
              f"principal component 2 ({explained[1]:.1%})")
    return plot.svg("2-D map of hyperwords")


# ---------------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:24px auto;max-width:1320px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 6px}
.sub{color:#666;margin-bottom:18px}
section{border:1px solid #ddd;border-radius:6px;padding:14px 16px;margin:0 0 16px;background:#fff}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));gap:16px}
.grid2>section{margin:0}
.grid2{margin-bottom:16px}
p.note{color:#555;margin:6px 0;font-size:13px}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{max-width:100%;height:auto;font-size:11px}
svg .axis{stroke:#444;stroke-width:1}
svg .grid{stroke:#eee;stroke-width:1}
svg .tick{fill:#444}
svg .label{fill:#222;font-size:12px}
svg .note{fill:#333;font-size:10px}
svg .bar{fill:#4c78a8}svg .bar:hover{fill:#f58518}
svg .threshold{stroke:#e45756;stroke-width:2;stroke-dasharray:5 3}
svg .threshold-label{fill:#e45756;font-size:12px;font-weight:600}
svg .whisker{stroke:#4c78a8;stroke-width:2}
svg .box{fill:#9ecae9;stroke:#4c78a8}
svg .median{stroke:#1f3b5a;stroke-width:2.5}
svg .mean{fill:#f58518}
svg .point{fill:#4c78a8;fill-opacity:.45;stroke:#1f3b5a;stroke-width:.6}svg .point:hover{fill:#f58518;fill-opacity:.9}
.group{margin:0 0 12px}
.group .canon{font-weight:600}
.pair{margin-left:18px;color:#333}
.score{display:inline-block;min-width:52px;color:#e45756;font-variant-numeric:tabular-nums}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:18px;border-left:1px dotted #bbb}
ul.tree{padding-left:4px;border:0}
ul.tree li{margin:1px 0}
.node{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:nowrap}
.node b{color:#4c78a8}
.gist{font-family:system-ui,sans-serif;color:#444;white-space:normal}
summary{cursor:pointer}
.more{color:#888;font-style:italic}
"""


def _section(ident: str, title: str, body: str, note: str = "") -> str:
    return (f'<section id="{ident}"><h2>{esc(title)}</h2>' + (f'<p class="note">{note}</p>' if note else "") + body + "</section>")


def _table(header: list[str] | None, rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _summary(data: dict) -> str:
    s, m = data["summary"], data["manifest"]
    rows = [
        ["documents", human(s["documents"])], ["input bytes", human(s["input_bytes"])],
        ["tokens", f"{human(s['tokens'])} ({s['tokenizer']})"], ["units", human(s["units"])],
        ["distinct units", f"{human(s['distinct_units'])} ({human(s['exact_duplicate_occurrences'])} exact-duplicate occurrences collapsed)"],
        ["near-duplicate merges", f"{human(s['near_duplicate_units'])} units ({human(s['near_duplicate_occurrences'])} occurrences)"],
        ["tokens per hyperword", f"{s['tokens_per_hyperword']:.2f}"], ["codebook size", human(s["codebook_size"])],
        ["store bytes", f"{human(s['store_bytes'])} ({s['store_to_input']:.3f} of input)"],
        ["dead letters", human(s["dead_letters"])],
        ["model", f"{m.get('model', {}).get('name', '?')} (embedder {m.get('model', {}).get('embedder', '?')})"],
    ]
    return _table(None, rows)


def _cluster_section(data: dict) -> str:
    bins = data["cluster_bins"]
    if not bins:
        return _section("cluster-sizes", "Cluster sizes", "<p>The codebook is empty: the store has no units.</p>")
    svg = category_bars([b["label"] for b in bins], [b["count"] for b in bins],
                        [f"{b['count']:,} hyperwords with {b['label']} distinct units" for b in bins],
                        "distinct units in the cluster (powers of two)", "hyperwords", log=False,
                        notes=[human(b["count"]) for b in bins])
    sp = data["cluster_spread"]
    note = (f"Distinct unit texts per hyperword (k-means cluster). {human(sp['count'])} non-empty clusters: median "
            f"{num(sp['median'])}, p90 {num(sp['p90'])}, largest {num(sp['max'])}"
            + (f"; {data['empty_clusters']:,} empty" if data["empty_clusters"] else "") + ".")
    return _section("cluster-sizes", "Cluster sizes", svg, esc(note))


def _near_dup_section(data: dict) -> str:
    nd = data["near_dup"]
    scores, threshold = nd["scores"], nd["threshold"]
    note = (f"Each near-duplicate merge's cosine to its canonical unit (provenance.score): {len(scores):,} merged units. "
            f"The threshold, {threshold:g}, is {nd['threshold_source']}; every merge is at or above it by construction, "
            f"so the shape above it shows how close the merged texts are.")
    return _section("near-dup-scores", "Near-duplicate similarity", score_histogram(scores, threshold), esc(note))


def _tokens_section(data: dict) -> str:
    rows = data["tokens_by_level"]
    table = _table(["level", "records", "mean", "median", "p10", "p90", "max"],
                   [[f"L{r['level']}", human(r["count"]), f"{r['mean']:,.2f}", num(r["median"]), num(r["p10"]),
                     num(r["p90"]), num(r["max"])] for r in rows], numeric={1, 2, 3, 4, 5, 6})
    note = ("Tokens (the embedding model's tokenizer) per record: at level 0 per hyperword, i.e. per unit occurrence; "
            "at level L &ge; 1 per scene. Whisker p10&ndash;p90, box p25&ndash;p75, dark line median, orange dot mean.")
    return _section("tokens-by-level", "Tokens per hyperword and per scene, by level", level_boxes(rows) + table, note)


def _compression_section(data: dict) -> str:
    rows = data["compression"]
    svg = category_bars([f"L{r['level']}" for r in rows], [r["tokens_per_code"] for r in rows],
                        [f"level {r['level']}: {r['count']:,} {r['records']}, {r['tokens_per_code']:,.2f} tokens per code, "
                         f"codebook {r['codebook_size']:,}" for r in rows],
                        "level", "tokens per code (log)", log=True,
                        notes=[f"{r['tokens_per_code']:,.1f}" for r in rows])
    table = _table(["level", "records", "stream length", "tokens per code", "codebook size", "code bits per token"],
                   [[f"L{r['level']}", r["records"], human(r["stream_length"]), f"{r['tokens_per_code']:,.2f}",
                     human(r["codebook_size"]), f"{r['bits_per_token']:.3g}"] for r in rows], numeric={2, 3, 4, 5})
    note = ("How many text tokens one code of each level stands for: the level's tokens over its stream length (records). "
            "Code bits per token: log2 of the level's codebook size over tokens per code, the size of the (lossy) code "
            "stream per token of text.")
    return _section("compression", "Compression by level", svg + table, note)


def _map_section(data: dict) -> str:
    mp = data["map"]
    if not mp["points"]:
        return _section("hyperword-map", "Map of hyperwords", "<p>No non-empty hyperwords to draw.</p>")
    shown, total = len(mp["points"]), mp["total"]
    note = (f"Each circle is a hyperword's centroid, projected to 2-D by PCA (numpy eigendecomposition of the covariance of all {total:,} non-empty "
            f"centroids); area proportional to its distinct units. Hover a circle for its representative text. "
            + (f"The {shown:,} largest of {total:,} hyperwords are drawn (--max-points)." if shown < total
               else f"All {total:,} hyperwords are drawn."))
    biggest = sorted(mp["points"], key=lambda p: (-p["units"], p["hyperword"]))[:10]
    table = _table(["hyperword", "distinct units", "occurrences", "representative text"],
                   [[p["hyperword"], human(p["units"]), human(p["occurrences"]), clean(p["text"])] for p in biggest],
                   numeric={0, 1, 2})
    return _section("hyperword-map", "Map of hyperwords", hyperword_map(mp["points"], mp["explained"])
                    + "<p class=\"note\">The ten largest:</p>" + table, esc(note))


def _groups_section(data: dict) -> str:
    g = data["groups"]
    if not g["top"]:
        return _section("near-dup-groups", "Largest near-duplicate groups", "<p>No near-duplicate merges in this version.</p>")
    parts = []
    for group in g["top"]:
        pairs = "".join(f'<div class="pair"><span class="score">{s["score"]:.4f}</span>{esc(clean(s["text"]))}</div>'
                        for s in group["samples"])
        parts.append(f'<div class="group"><div><span class="canon" title="{esc(group["canonical_unit_id"])}">'
                     f'{esc(clean(group["text"]))}</span> <span class="more">{group["members"]:,} merged unit(s), '
                     f'{group["occurrences"]:,} occurrences in all, cosine {group["min_score"]:.4f}&ndash;'
                     f'{group["max_score"]:.4f}</span></div>{pairs}</div>')
    note = (f"The {len(g['top']):,} largest of {g['total']:,} groups (canonical unit in bold, then up to "
            f"{SAMPLES_PER_GROUP} merged members with their cosine to it: the lowest, the highest and one between).")
    return _section("near-dup-groups", "Largest near-duplicate groups", "".join(parts), esc(note))


def _tree_html(doc: dict, scenes: list[dict]) -> str:
    """A scene tree as nested lists: root and its children open, deeper levels folded. At most
    MAX_TREE_NODES scenes, chosen breadth first from the root, and MAX_CHILDREN per scene."""
    children: dict = {}
    for r in scenes:
        children.setdefault(r["parent_scene_id"], []).append(r)
    roots = children.get(None, [])
    drawn, queue = set(), list(roots)
    while queue and len(drawn) < MAX_TREE_NODES:
        r = queue.pop(0)
        drawn.add(r["scene_id"])
        queue.extend(children.get(r["scene_id"], [])[:MAX_CHILDREN])
    depth = max((r["level"] for r in scenes), default=0)

    def node(r: dict) -> str:
        label = (f'<span class="node"><b>L{r["level"]}.{r["index"]}</b> units {r["first_position"]}&ndash;'
                 f'{r["last_position"]} · {r["token_count"]:,} tok · code {r["code"]}</span> '
                 f'<span class="gist">{esc(clean(r["gist_text"], 160))}</span>')
        kids = children.get(r["scene_id"], [])
        shown = [k for k in kids if k["scene_id"] in drawn]
        if not kids:
            return f"<li>{label}</li>"
        rest = len(kids) - len(shown)
        inner = "".join(node(k) for k in shown) + (f'<li class="more">&hellip; {rest:,} more scene(s) not drawn</li>' if rest else "")
        opened = " open" if r["level"] >= depth - 1 else ""
        return f"<li><details{opened}><summary>{label}</summary><ul>{inner}</ul></details></li>"

    levels = ", ".join(f"L{level}: {sum(1 for r in scenes if r['level'] == level):,}" for level in range(depth, 0, -1))
    head = (f'<h3 style="font-size:14px;margin:10px 0 4px">{esc(visible(doc["doc_id"]))} '
            f'<span class="more">{doc["unit_count"]:,} units, {doc["bytes"]:,} bytes'
            + (f", scenes {levels}" if depth else ", no scenes") + "</span></h3>")
    return head + ('<ul class="tree">' + "".join(node(r) for r in roots) + "</ul>" if roots else "")


def _trees_section(data: dict) -> str:
    trees = data["trees"]
    if not trees:
        return _section("scene-trees", "Scene trees", "<p>No document with units to draw.</p>")
    note = (f"Each scene: level.index, its span of unit positions, tokens, code in its level's codebook, and its gist "
            f"(most central units). The root and its children are open; click a scene to unfold it. At most "
            f"{MAX_CHILDREN} children per scene and {MAX_TREE_NODES} scenes per document are drawn.")
    return _section("scene-trees", "Scene trees", "".join(_tree_html(t["doc"], t["scenes"]) for t in trees), esc(note))


def render_html(data: dict, store: StoreVersion) -> str:
    m = data["manifest"]
    title = f"hyperscene report: {store.store} v{store.version}"
    sub = (f"store {esc(store.store)}, version {store.version} (format {m.get('format_version')}), "
           f"created {esc(m.get('created_at', '?'))}; report written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    body = (f"<h1>{esc(title)}</h1><div class=\"sub\">{sub}</div>"
            + _section("summary", "Summary", _summary(data))
            + '<div class="grid2">' + _cluster_section(data) + _near_dup_section(data) + "</div>"
            + '<div class="grid2">' + _tokens_section(data) + _compression_section(data) + "</div>"
            + _map_section(data) + _groups_section(data) + _trees_section(data))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _check(args) -> None:
    for name, value in (("--max-points", args.max_points), ("--groups", args.groups), ("--trees", args.trees)):
        if value < 0:
            raise InvalidOption(f"{name} must be 0 or more, not {value}")
    if FileSystems.get_scheme(args.out) is None:
        import os

        if os.path.isdir(args.out):
            raise InvalidOption(f"--out {args.out!r} is a directory: give the HTML file to write, e.g. {args.out.rstrip('/')}/report.html")
        parent = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(parent):
            raise InvalidOption(f"--out {args.out!r}: folder {parent!r} does not exist")
        store, out = os.path.realpath(args.store), os.path.realpath(args.out)
        if os.path.commonpath([store, out]) == store:
            raise InvalidOption(f"--out {args.out!r} is inside the store {args.store!r}: write the report elsewhere")
    if FileSystems.exists(args.out) and not args.overwrite:
        raise InvalidOption(f"--out {args.out!r} exists: add --overwrite to replace it, or choose another file")


def report(store_path: str, out: str, version: int | None = None, max_points: int = DEFAULT_MAX_POINTS,
           groups: int = DEFAULT_GROUPS, trees: int = DEFAULT_TREES, doc_ids: list[str] | None = None) -> dict:
    store = StoreVersion(store_path, version)
    if doc_ids:
        from hyperscene.transforms.store.documents import check_documents

        check_documents(store, doc_ids)
    data = gather(store, max_points, groups, trees, doc_ids)
    page = render_html(data, store).encode("utf-8")
    with FileSystems.create(out, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(page)
    return {"out": out, "bytes": len(page), "version": store.version, "points": len(data["map"]["points"]),
            "groups": len(data["groups"]["top"]), "trees": len(data["trees"])}


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    _check(args)
    result = report(args.store, args.out, args.version, args.max_points, args.groups, args.trees, args.doc)
    print(f"wrote {result['out']} ({human(result['bytes'])} bytes): store version {result['version']}, "
          f"{result['points']:,} hyperwords on the map, {result['groups']:,} near-duplicate groups, {result['trees']:,} scene trees")
    sys.stdout.flush()
    return result
