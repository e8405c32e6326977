"""``hyperscene inspect``: what a store holds and how much the compression did, level by level;
with ``--doc``, one document's scene tree."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys

from hyperscene.pipelines.cliutil import human, visible
from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.store.publish import table_bytes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperscene inspect", description="Summarise a store, level by level (level 0: the units and "
                                "their hyperwords; then the scenes of each level); or draw one document's scene tree.")
    p.add_argument("store", help="store directory")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--tokenizer", help="count tokens with this Hugging Face tokenizer (name or folder) "
                   "instead of the embedding model's, which the store already counted with")
    p.add_argument("--docs", action="store_true", help="list document ids instead")
    p.add_argument("--json", action="store_true", help="print the summary (or with --doc, the document's scenes) as JSON")
    g = p.add_argument_group("one document")
    g.add_argument("--doc", metavar="ID", help="draw this document's scene tree instead: the root first, one line per "
                   "scene (level.index, unit span, tokens, code in its level's codebook, the start of its gist)")
    g.add_argument("--max-children", type=int, default=6, metavar="N",
                   help="children drawn per scene, the rest summed up in one line (default: 6; 0: all)")
    g.add_argument("--to-level", type=int, default=1, metavar="L", help="lowest level drawn (default: 1)")
    g.add_argument("--width", type=int, help="cut lines to this many characters (default: the terminal's width, or 100)")
    return p


def count_with(store: StoreVersion, tokenizer_name: str) -> int:
    """Tokens of the whole corpus under another tokenizer: each distinct unit once, times its count."""
    from hyperscene.transforms.tokens import count_tokens_by_name

    units = store.read("units", ["text", "occurrence_count"])
    tokens = count_tokens_by_name(tokenizer_name, units["text"].to_pylist())
    return sum(n * c for n, c in zip(tokens, units["occurrence_count"].to_pylist()))


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
        "near_duplicate_candidates": c.get("near_duplicate_candidates"),
        "near_duplicate_check": m.get("config", {}).get("near_dup_check", "none"),
        "model_warnings": _model_warnings(m),
        "hyperword_stream_length": units,
        "tokens_per_hyperword": round(tokens / units, 2) if units else 0.0,
        "codebook_size": c.get("codebook_size", 0),
        "store_bytes": c.get("store_bytes", 0),
        "store_to_input": round(c.get("store_bytes", 0) / c["input_bytes"], 3) if c.get("input_bytes") else 0.0,
        "vector_bytes": c.get("vector_bytes", 0),
        "written_bytes": c.get("written_bytes", c.get("store_bytes", 0)),
        "table_bytes": table_bytes(m["files"]),
        "made_by": made_by(m),
        "dead_letters": c.get("dead_letters", 0),
        "wall_seconds": m["timings"]["wall_seconds"],
        "model": m["model"]["name"],
        "levels": level_stats(store),
    }


def made_by(manifest: dict) -> str:
    """What wrote a version: compress, a refresh (what it changed, its drift) or a retrain (ids kept)."""
    if "compact" in manifest:
        c = manifest["compact"]
        return f"compact of version {c.get('from_version')}: {c.get('files_merged')} files rewritten into {c.get('files_written')}"
    if "retrain" in manifest:
        r = manifest["retrain"]
        st = r.get("stability") or {}
        return (f"retrain of version {r.get('from_version')} ({r.get('reason')}): {st.get('units_kept_hyperword_share')} of units "
                f"kept their hyperword, {st.get('occurrences_kept_semantic_id_share')} of occurrences their semantic id")
    if "refresh" in manifest:
        r = manifest["refresh"]
        drift = r.get("drift") or {}
        ratio = drift.get("ratio") if drift.get("ratio") is not None else "not measured"
        return (f"refresh of version {r.get('from_version')}: +{r.get('new_documents', 0)} new, {r.get('changed_documents', 0)} "
                f"changed, {r.get('deleted_documents', 0)} deleted documents; drift ratio {ratio}")
    return "compress"


_LEVEL_KEY = re.compile(r"level_(\d+)_scenes$")


def level_stats(store: StoreVersion) -> list[dict]:
    """One row per level: level 0 the units (each a hyperword of the level-0 codebook), each level L
    >= 1 its scenes. ``count`` records (= ``stream_length``, the length of that level's code stream),
    ``mean_tokens`` per record (the store's own token counts), ``codebook_size``.

    From the manifest's counts; a store whose manifest lacks the per-level counts but has scenes
    gets them from the scenes and codebooks tables.
    """
    c = store.manifest["counts"]
    units, tokens = c.get("units", 0), c.get("tokens", 0)
    rows = [{"level": 0, "records": "units", "count": units, "mean_tokens": round(tokens / units, 2) if units else 0.0,
             "codebook_size": c.get("codebook_size", 0), "stream_length": units}]
    levels = sorted(int(m.group(1)) for m in map(_LEVEL_KEY.match, c) if m)
    if levels:
        stats = {level: (c[f"level_{level}_scenes"], c.get(f"level_{level}_tokens", 0), c.get(f"level_{level}_codebook_size", 0))
                 for level in levels}
    else:
        stats = _level_stats_from_tables(store)
    for level, (scenes, scene_tokens, codebook) in sorted(stats.items()):
        rows.append({"level": level, "records": "scenes", "count": scenes,
                     "mean_tokens": round(scene_tokens / scenes, 2) if scenes else 0.0,
                     "codebook_size": codebook, "stream_length": scenes})
    return rows


def _level_stats_from_tables(store: StoreVersion) -> dict[int, tuple[int, int, int]]:
    if not store.files("scenes"):
        return {}
    import numpy as np

    scenes = store.read("scenes", ["level", "token_count"])
    levels, tokens = scenes["level"].to_numpy(), scenes["token_count"].to_numpy()
    codes = store.read("codebooks", ["level"])["level"].to_numpy()
    return {int(level): (int((levels == level).sum()), int(tokens[levels == level].sum()), int((codes == level).sum()))
            for level in np.unique(levels)}


def render(s: dict) -> str:
    rows = [
        ("store", f"{s['store']} (version {s['version']}, format {s['format_version']})"),
        ("documents", human(s["documents"])),
        ("input bytes", human(s["input_bytes"])),
        ("tokens", f"{human(s['tokens'])} ({s['tokenizer']})"),
        ("words", human(s["words"])),
        ("units", f"{human(s['units'])} (sentences and clauses)"),
        ("distinct units", f"{human(s['distinct_units'])} ({human(s['exact_duplicate_occurrences'])} exact-duplicate occurrences collapsed)"),
        ("near-dup merges", f"{human(s['near_duplicate_units'])} units ({human(s['near_duplicate_occurrences'])} occurrences)"
                            + (f"; {human(s['near_duplicate_candidates'])} had a candidate, check: {s['near_duplicate_check']}"
                               if s.get("near_duplicate_candidates") is not None else "")),
        ("hyperword stream", f"{human(s['hyperword_stream_length'])} hyperwords"),
        ("tokens/hyperword", f"{s['tokens_per_hyperword']:.2f}"),
        ("codebook size", human(s["codebook_size"])),
        ("store bytes", f"{human(s['store_bytes'])} ({s['store_to_input']:.3f} of input)"
                        + (f", of which vectors {human(s['vector_bytes'])} (kept for refresh)" if s.get("vector_bytes") else "")
                        + (f"; {human(s['written_bytes'])} written by this version, the rest shared with earlier ones"
                           if s["written_bytes"] != s["store_bytes"] else "")),
        ("bytes per table", ", ".join(f"{table} {human(n)}" for table, n in s["table_bytes"].items())),
        ("made by", s["made_by"]),
        ("dead letters", human(s["dead_letters"])),
        ("wall time", f"{s['wall_seconds']:.1f} s"),
    ]
    rows += [("warning", line) for line in s.get("model_warnings") or ()]
    return "\n".join(f"{k:<18}{v}" for k, v in rows) + "\n\n" + render_levels(s["levels"])


def render_levels(levels: list[dict]) -> str:
    header = ("level", "records", "count", "tokens each", "codebook", "stream length")
    lines = [(str(r["level"]), r["records"], human(r["count"]), f"{r['mean_tokens']:,.2f}", human(r["codebook_size"]),
              human(r["stream_length"])) for r in levels]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    out = []
    for row in [header, *lines]:
        cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), *(cell.rjust(w) for cell, w in zip(row[2:], widths[2:]))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


TREE_COLUMNS = ["scene_id", "level", "index", "parent_scene_id", "first_position", "last_position", "child_count",
                "token_count", "code", "gist"]


def document_scenes(store: StoreVersion, doc_id: str) -> tuple[dict, list[dict]]:
    """(documents row, its scenes sorted by (level, index), each with ``gist_text``): read for this
    document only."""
    from hyperscene.transforms.store.documents import gist_text, gist_texts
    from hyperscene.transforms.store.documents import check_documents, read_table

    doc = check_documents(store, [doc_id]).to_pylist()[0]
    scenes = read_table(store, "scenes", TREE_COLUMNS, {"doc_id": [doc_id]}).to_pylist() if store.files("scenes") else []
    scenes.sort(key=lambda r: (r["level"], r["index"]))
    for r in scenes:
        r["doc_id"] = doc_id
    texts = gist_texts(store, scenes)
    for r in scenes:
        r["gist_text"] = gist_text([texts[(doc_id, p)] for p in r["gist"]])
        del r["doc_id"]
    return doc, scenes


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def draw_tree(doc: dict, scenes: list[dict], max_children: int = 6, to_level: int = 1, width: int = 100) -> str:
    """The scene tree as text: a header line, then the root and its descendants down to ``to_level``,
    one line each, drawn with box-drawing characters; past ``max_children`` (0: no cap) children of a
    scene, one "… N more" line stands for the rest."""
    depth = max((r["level"] for r in scenes), default=0)
    per_level = {}
    for r in scenes:
        per_level[r["level"]] = per_level.get(r["level"], 0) + 1
    tokens = next((r["token_count"] for r in scenes if r["parent_scene_id"] is None), 0)
    header = (f"{visible(doc['doc_id'])}: {doc['unit_count']:,} units, {tokens:,} tokens, {doc['bytes']:,} bytes, "
              + (f"{depth} scene level{'s' if depth != 1 else ''} ("
                 + ", ".join(f"L{level}: {n:,}" for level, n in sorted(per_level.items(), reverse=True)) + ")"
                 if depth else "no scenes (no units)"))
    lines = [_cut(header, width)]
    children: dict[str | None, list[dict]] = {}
    for r in scenes:
        children.setdefault(r["parent_scene_id"], []).append(r)

    def node(r: dict) -> str:
        return (f"L{r['level']}.{r['index']}  units {r['first_position']}-{r['last_position']}  "
                f"{r['token_count']:,} tok  code {r['code']}  · {visible(r['gist_text'])}")

    def walk(r: dict, indent: str, branch: str, below: str) -> None:
        lines.append(_cut(indent + branch + node(r), width))
        if r["level"] <= to_level:
            return
        kids = children.get(r["scene_id"], [])
        shown = kids if not max_children or len(kids) <= max_children else kids[:max_children]
        rest = kids[len(shown):]
        for i, kid in enumerate(shown):
            last = i == len(shown) - 1 and not rest
            walk(kid, indent + below, "└─ " if last else "├─ ", "   " if last else "│  ")
        if rest:
            lines.append(_cut(f"{indent}{below}└─ … {len(rest):,} more (L{rest[0]['level']}.{rest[0]['index']}"
                              f"–L{rest[-1]['level']}.{rest[-1]['index']})", width))

    for root in children.get(None, []):
        walk(root, "", "", "")
    return "\n".join(lines)


def run(argv: list[str]) -> dict:
    import pyarrow.compute as pc

    args = build_parser().parse_args(argv)
    store = StoreVersion(args.store, args.version)
    store.check_files()  # a summary of a store that cannot be read back would mislead
    if args.docs:
        documents = store.read("documents")
        if "deleted" in documents.column_names:  # deleted documents are listed by the versions that hold them
            documents = documents.filter(pc.invert(documents["deleted"]))
        for doc_id in sorted(documents["doc_id"].to_pylist()):
            print(visible(doc_id))  # --json gives the exact ids
        return {}
    if args.doc is not None:
        return _show_document(store, args)
    summary = summarise(store, args.tokenizer)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    sys.stdout.flush()
    return summary


def _show_document(store: StoreVersion, args) -> dict:
    if args.max_children < 0:
        raise InvalidOption(Errors.E290.format(value=args.max_children))
    if args.to_level < 1:
        raise InvalidOption(Errors.E291.format(value=args.to_level))
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    if width < 20:
        raise InvalidOption(Errors.E292.format(value=width))
    doc, scenes = document_scenes(store, args.doc)
    result = {"doc_id": doc["doc_id"], "units": doc["unit_count"], "bytes": doc["bytes"],
              "levels": max((r["level"] for r in scenes), default=0), "scenes": scenes}
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json
          else draw_tree(doc, scenes, args.max_children, args.to_level, width))
    sys.stdout.flush()
    return result


def _model_warnings(manifest: dict) -> list[str]:
    from hyperscene.transforms.manifest_warnings import manifest_warnings

    return manifest_warnings(manifest)