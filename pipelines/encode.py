"""``hyperscene encode``: new text in a store's terms, without writing a version.

Each input document is segmented, embedded and assigned with the store's own model, settings and
frozen codebooks (:class:`hyperscene.transforms.encoder.Encoder`):

- ``--format jsonl`` (default): one JSON object per document: ``doc_id``, ``prefix`` and ``units``
  (each with its text, separator, unit id, hyperword, semantic id, and ``match``: the stored unit it
  is (``exact``) or a refresh would merge it into (``near``, with the cosine), or null), and its
  ``scenes``. ``prefix`` plus each unit's text and separator is the document, byte for byte.
- ``--format tokens``: one line per document of ``<hw_LEVEL_CODE>`` tokens at ``--level``, the strings
  ``hyperscene export --format hyperwords`` writes.
- ``--decode``: the way back; each input line of tokens becomes a line of what they stand for (a
  hyperword's representative text, a scene code's representative gist), joined by `` | ``.

Inputs are read as compress reads them (files, folders, globs; ``-`` or none: standard input, one
document, or one per line with ``--input-format jsonl``). Records that cannot be read are skipped and
counted on standard error, as compress counts its dead letters.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from hyperscene.transforms.errors import Errors, InvalidOption

logger = logging.getLogger("hyperscene")

FORMATS = ("jsonl", "tokens")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene encode",
        description="Encode new text with a store's model, segmentation and frozen codebooks, without writing a version: "
                    "per unit its hyperword, semantic id and nearest stored unit (--format jsonl), or hyperword tokens "
                    "(--format tokens); --decode turns tokens back into representative texts.",
    )
    p.add_argument("store", help="a store written by hyperscene compress")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="files, directories (recursive) or quoted glob patterns; - or none: standard input")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="jsonl (default): one object per document with every unit; tokens: one line of <hw_L_C> tokens "
                        "per document")
    p.add_argument("--level", type=int, default=0, metavar="L",
                   help="tokens: 0 = each unit's hyperword (default), L >= 1 = the codes of the level-L scenes; a document "
                        "with fewer levels gives its root, as export does")
    p.add_argument("--decode", action="store_true",
                   help="read lines of <hw_L_C> tokens and write what each stands for (its representative text or gist), "
                        "joined by ' | ', one line per input line")
    p.add_argument("--out", help="file to write (default: standard output)")
    g = p.add_argument_group("input (default: as the store was compressed)")
    g.add_argument("--input-format", choices=("auto", "text", "jsonl", "parquet"))
    g.add_argument("--text-field")
    g.add_argument("--id-field")
    g = p.add_argument_group("execution (the model, segmentation and codebooks are the store's own)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: cpu)")
    g.add_argument("--precision", choices=("auto", "float32", "bfloat16", "float16"),
                   help="what the torch embedder computes in (default: what the store was written with, so that "
                        "vectors come out as compress made them)")
    g.add_argument("--batch-size", type=int, help="texts per forward pass (default: 64 on the CPU, 512 on cuda, 4096 for static)")
    g.add_argument("--batch-units", type=int, default=None, metavar="N",
                   help="units gathered before their distinct texts are embedded together (default: 10,000)")
    g.add_argument("--cache-dir", help="where distilled static and exported OpenVINO models are kept")
    return p


def read_documents(inputs: list[str], input_format: str, text_field: str, id_field: str | None, dead: list[dict],
                   stdin_format: str | None = None):
    """(doc_id, text) of each readable input record, in path then record order; the others go to ``dead``."""
    from hyperscene.transforms.inputs import InputFile, discover
    from hyperscene.transforms.read import read_input_file, read_jsonl, read_text_file

    files = [] if inputs in ([], ["-"]) else discover(inputs, input_format)
    if not files:  # standard input: one document, or JSON lines when --input-format jsonl says so
        raw = sys.stdin.buffer.read()
        stdin = InputFile("-", "-", "jsonl" if stdin_format == "jsonl" else "text")
        records = read_jsonl(stdin, raw, text_field, id_field) if stdin.format == "jsonl" else read_text_file(stdin, raw)
        files_records = [records]
    else:
        files_records = (read_input_file(f, text_field, id_field) for f in files)
    for records in files_records:
        for tag, record in records:
            if tag == "documents":
                yield record["doc_id"], record["text"]
            else:
                dead.append(record)


def encode(args: argparse.Namespace, out) -> dict:
    from hyperscene.transforms.encoder import BATCH_UNITS, Encoder
    from hyperscene.transforms.export import json_line
    from hyperscene.transforms.progress import Progress

    if args.decode:  # tables only: no model
        from hyperscene.transforms.encoder import CodeTexts
        from hyperscene.transforms.store.reader import StoreVersion

        code_texts = CodeTexts(StoreVersion(args.store, args.version))
        return decode_lines(code_texts, sys.stdin if args.inputs in ([], ["-"]) else _lines(args.inputs), out)
    encoder = Encoder.from_store(args.store, args.version, device=args.device, precision=args.precision,
                                 batch_size=args.batch_size, cache_dir=args.cache_dir)
    deepest = max(encoder.levels, default=0)
    if args.level > deepest:
        raise InvalidOption((Errors.E274 if deepest else Errors.E275).format(level=args.level, deepest=deepest))
    config = encoder.store.manifest["config"]
    dead: list[dict] = []
    documents = read_documents(args.inputs, args.input_format or config.get("input_format", "auto"),
                               args.text_field or config.get("text_field", "text"),
                               args.id_field if args.id_field is not None else config.get("id_field"), dead,
                               stdin_format=args.input_format)
    progress = Progress("encode", "units")
    started = time.monotonic()
    for doc in encoder.encode_many(documents, args.batch_units or BATCH_UNITS):
        progress.add(len(doc.units))
        if args.format == "tokens":
            out.write(" ".join(doc.tokens(args.level)) + "\n")
        else:
            out.write(json_line(doc.as_dict()))
    seconds = time.monotonic() - started
    for letter in dead[:5]:
        logger.warning("skipped %s%s: %s", letter["source"], "" if letter["record"] is None else f" record {letter['record']}",
                       letter["reason"])
    return {**encoder.counts, "skipped": len(dead), "seconds": round(seconds, 3)}


def _lines(paths: list[str]):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from f


def decode_lines(code_texts, lines, out) -> dict:
    count = 0
    for line in lines:
        texts = code_texts.of(line.split())
        out.write(" | ".join("" if t is None else " ".join(t.split()) for t in texts) + "\n")
        count += 1
    return {"lines": count}


def run(argv: list[str]) -> dict:
    args = build_parser().parse_intermixed_args(argv)  # inputs may follow options: encode STORE --decode FILE
    if args.level < 0:
        raise InvalidOption(Errors.E272.format(level=args.level))
    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidOption(Errors.E214.format(value=args.batch_size))
    if args.batch_units is not None and args.batch_units < 1:
        raise InvalidOption(Errors.E703.format(value=args.batch_units))
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            return encode(args, out)
    return encode(args, sys.stdout)


def print_result(result: dict) -> None:
    if "lines" in result:
        print(f"decoded {result['lines']:,} lines", file=sys.stderr)
        return
    share = f" ({result['stored_units'] / result['distinct_units']:.1%})" if result["distinct_units"] else ""
    print(f"encoded {result['documents']:,} documents, {result['units']:,} units ({result['distinct_units']:,} distinct: "
          f"{result['stored_units']:,} stored{share}, {result['near_matches']:,} near-duplicates of stored units) in "
          f"{result['seconds']:.1f} s" + (f"; {result['skipped']:,} unreadable records skipped" if result["skipped"] else ""),
          file=sys.stderr)
