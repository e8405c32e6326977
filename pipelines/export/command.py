"""``hyperscene export``: option checks against the store before anything in ``--out`` is touched,
the output folder (refused unless new, empty or a previous export), the run, and its summary."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import replace

from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.export.formats import EXPORTERS, SCHEMAS, Writers
from hyperscene.pipelines.export.options import DEFAULT_TEST_FRACTION, FORMATS, Options, build_parser
from hyperscene.pipelines.export.reading import live_documents
from hyperscene.transforms import export as ex
from hyperscene.transforms.errors import Errors, InvalidOption, VerificationFailed
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.inputs import glob_escape, match_paths
from hyperscene.transforms.store.reader import StoreVersion

_OWN_FILE = re.compile(rf"({re.escape(ex.SUMMARY)}|{re.escape(ex.VOCABULARY)}|{re.escape(ex.CENTROIDS)}"
                       rf"|{ex.DATA_DIR}/({'|'.join(ex.SPLITS)})-\d{{5}}\.({'|'.join(ex.FILE_FORMATS)}))$")


def prepare_out(out: str, overwrite: bool) -> None:
    """Refuse a non-empty --out, unless ``overwrite`` and every file there is one export writes,
    which are then deleted."""
    if FileSystems.get_scheme(out) is None and os.path.isfile(out):
        raise InvalidOption(Errors.E277.format(out=out))
    root = out.replace("\\", "/").rstrip("/")
    existing = match_paths(glob_escape(root) + "/**")
    if not existing:
        return
    if not overwrite:
        raise InvalidOption(Errors.E278.format(out=out))
    relative = [p.replace("\\", "/")[len(root) + 1:] for p in existing]
    foreign = sorted(r for r in relative if not _OWN_FILE.match(r))
    if foreign:
        raise InvalidOption(Errors.E279.format(out=out, file=foreign[0]))
    FileSystems.delete(existing)


def _deepest(store: StoreVersion) -> int:
    import pyarrow.compute as pc

    if not store.files("scenes"):
        return 0
    return pc.max(store.read("scenes", ["level"])["level"]).as_py() or 0


def _check_level(store: StoreVersion, level: int, lowest: int) -> None:
    deepest = _deepest(store)
    if level < lowest:
        raise InvalidOption((Errors.E273 if lowest == 1 else Errors.E272).format(level=level))
    if level > deepest:
        raise InvalidOption((Errors.E274 if deepest else Errors.E275).format(level=level, deepest=deepest))


def export(opts: Options) -> dict:
    """Write the export described by ``opts``; returns the summary that ``export.json`` holds."""
    if opts.fmt not in FORMATS:
        raise InvalidOption(Errors.E270.format(formats=", ".join(FORMATS), value=opts.fmt))
    if opts.fmt == "text" and opts.level is not None:
        raise InvalidOption(Errors.E271)
    ex.check_order(opts.order, opts.fmt)
    ex.check_mix(opts.mix, opts.fmt)
    shard_bytes = ex.parse_size(opts.shard_size)
    fraction = DEFAULT_TEST_FRACTION[opts.fmt] if opts.test_fraction is None else opts.test_fraction
    file_format = opts.file_format or ("jsonl" if opts.fmt == "pairs" else "parquet")
    store = StoreVersion(opts.store, opts.version)
    documents = live_documents(store)
    held_out = ex.held_out_documents(documents["doc_id"].to_pylist(), fraction)
    # Option errors come before anything in --out is deleted or written.
    if opts.fmt != "text":
        lowest = 1 if opts.fmt == "pairs" else 0
        opts = replace(opts, level=lowest if opts.level is None else opts.level)
        _check_level(store, opts.level, lowest)
    if opts.fmt == "pairs":
        ex.parse_tasks(opts.tasks)
        if opts.max_scene_tokens < 0:
            raise InvalidOption(Errors.E276.format(value=opts.max_scene_tokens))
    prepare_out(opts.out, opts.overwrite)

    import pyarrow as pa

    started = time.monotonic()
    writers = Writers(opts.out, file_format, SCHEMAS[opts.fmt](pa), shard_bytes, held_out)
    progress = Progress("export", "documents")
    mismatches: list[str] = []
    counts = EXPORTERS[opts.fmt](store, opts, documents, writers, progress, mismatches)
    files = writers.close()
    if mismatches:
        shown = ", ".join(repr(m) for m in mismatches[:5]) + (" ..." if len(mismatches) > 5 else "")
        raise VerificationFailed(Errors.E502.format(count=len(mismatches), docs=shown, out=opts.out, summary=ex.SUMMARY,
                                                    store=opts.store))
    summary = {
        "format": opts.fmt,
        "store": opts.store,
        "version": store.version,
        "level": opts.level,
        "file_format": file_format,
        "options": {"order": opts.order, "mix": opts.mix,
                    **({"dedup_scope": opts.dedup_scope, "min_dedup_tokens": opts.min_dedup_tokens} if opts.fmt == "text" else
                       {"tasks": list(ex.parse_tasks(opts.tasks)), "expand_from": opts.expand_from,
                        "max_scene_tokens": opts.max_scene_tokens} if opts.fmt == "pairs" else {})},
        "test_fraction": fraction,
        "documents": documents.num_rows,
        "rows": writers.rows,
        "counts": counts,
        "seconds": round(time.monotonic() - started, 3),
        "files": files,
    }
    ex.write_json(FileSystems.join(opts.out, ex.SUMMARY), summary)
    return summary


def closing_lines(s: dict) -> str:
    c = s["counts"]
    files = len(s["files"])
    rows = ", ".join(f"{n:,} {split}" for split, n in s["rows"].items() if n) or "0"
    order = s["options"].get("order", "document")
    levels = f"levels down to {s['level']}" if order == "level" else f"level {s['level']}"
    head = (f"exported {s['format']}" + (f" at {levels}" if s["level"] is not None else "")
            + (f" in {order} order" if order != "document" else "")
            + f" from version {s['version']}: {s['documents']:,} documents, {rows} records in {files} file{'s' if files != 1 else ''}")
    ratio = f" ({c['tokens_out'] / c['tokens_in']:.1%} of in)" if c["tokens_in"] else ""
    if s["format"] == "text":
        tail = (f"tokens in {c['tokens_in']:,}, tokens out {c['tokens_out']:,}{ratio}; units in {c['units_in']:,}, "
                f"out {c['units_out']:,} (counted with {c['counted_with']})")
    elif s["format"] == "hyperwords":
        tail = (f"tokens in {c['tokens_in']:,} (counted with {c['counted_with']}), hyperword tokens out "
                f"{c['tokens_out']:,}{ratio}; vocabulary {c['vocabulary']:,} tokens, centroids {c['vocabulary']:,} x {c['dimension']}")
    else:
        share = f", {c['tokens_out'] / c['tokens_in']:.1%} of in" if c["tokens_in"] else ""
        tail = (f"tokens in {c['tokens_in']:,}, tokens out {c['tokens_out']:,} (the pairs' texts, gists and codes, prompts "
                f"not counted{share}; counted with {c['counted_with']}); {c['scenes']:,} scenes"
                + (f", {c['skipped_scenes']:,} longer than --max-scene-tokens skipped" if c["skipped_scenes"] else "")
                + (f", {c['transitions']:,} transitions" if c.get("transitions") else ""))
    if c.get("raw_documents"):
        tail += (f"; mix: {c['raw_documents']:,} document{'s' if c['raw_documents'] != 1 else ''} "
                 f"({c['raw_tokens']:,} tokens) written as their exact text")
    return head + "\n" + tail


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    summary = export(Options(
        store=args.store, out=args.out, fmt=args.format, version=args.version, overwrite=args.overwrite,
        file_format=args.file_format, shard_size=args.shard_size, test_fraction=args.test_fraction,
        tokenizer=args.tokenizer, dedup_scope=args.dedup_scope, min_dedup_tokens=args.min_dedup_tokens,
        level=args.level, tasks=args.tasks, expand_from=args.expand_from, max_scene_tokens=args.max_scene_tokens,
        order=args.order, mix=args.mix,
    ))
    print(closing_lines(summary))
    sys.stdout.flush()
    return summary
