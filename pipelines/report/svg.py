"""The report's plots as inline SVG, drawn here without a plotting library: scales, axes, bars, the
similarity histogram, box plots per level and the hyperword map. Hover text is SVG ``<title>``,
which every browser shows without JavaScript."""

from __future__ import annotations

import math

from hyperscene.pipelines.report.text import clean, esc, num
from hyperscene.transforms import report_data as rd

SCORE_BIN = 0.005  # width of the similarity histogram's bins (cosine)


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
