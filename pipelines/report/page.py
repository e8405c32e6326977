"""The report as one self-contained HTML page: its style sheet, one section per figure with its
note, the near-duplicate groups and the scene trees as nested lists that fold without JavaScript."""

from __future__ import annotations

import time

from hyperscene.pipelines.cliutil import human, visible
from hyperscene.pipelines.report.reading import SAMPLES_PER_GROUP
from hyperscene.pipelines.report.svg import category_bars, hyperword_map, level_boxes, score_histogram
from hyperscene.pipelines.report.text import clean, esc, num
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.unit_ids import unit_hex

MAX_TREE_NODES = 150  # scenes drawn per document, breadth first from the root
MAX_CHILDREN = 6  # children drawn per scene; the rest are counted in one line

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
        parts.append(f'<div class="group"><div><span class="canon" title="{unit_hex(group["canonical_unit_id"])}">'
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
