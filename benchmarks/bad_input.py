"""Compress a folder of bad inputs, decompress it, and print what became of each one.

    python benchmarks/bad_input.py                      # the small cases, then a 200 MB single-line document
    python benchmarks/bad_input.py --huge-mb 0          # the small cases only
    python benchmarks/bad_input.py --huge-only --huge-mb 40   # one huge document alone, to see how memory scales
    python benchmarks/bad_input.py --segment-only --huge-mb 40   # its segmentation and bucketing alone, whole and in slices

Every case either round-trips exactly (a text file's restored bytes equal the input; a JSONL record's
restored text equals its text field) or is a row of the store's ``dead_letters`` table with its
source, record, reason and raw bytes. The table printed is input -> outcome. The small cases use the
default embedder (the static one stops on units without tokens, see ``tests/test_bad_input.py``,
which builds the same cases with :func:`write_cases` and asserts each outcome).

The huge document is one line of English prose (the sample book's words joined by spaces, repeated),
generated in a temporary folder, never committed, and compressed on its own with ``--embedder
static``. Printed: its wall time, the peak resident memory of the compress (``resource.getrusage``
of this process: the DirectRunner runs in-process), the peak each stage saw, and the resident memory
every 15 s. Past ``--max-rss-gb`` (default 12) the run stops, printing where each thread of the
pipeline was, rather than letting the machine run out of memory. ``--segment-only`` runs just the
segmentation and exact-dedup bucketing of that document, outside Beam, once whole (one occurrence
table) and once in the slices the pipeline emits, each in a fresh process, and prints the peak.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import os
import resource
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "sample-corpus" / "alice-in-wonderland.txt"


@dataclass(frozen=True)
class Case:
    label: str  # what the table shows
    file: str  # relative to the corpus folder
    record: int | None  # JSONL line number (from 1); None for a whole file
    raw: bytes | None  # the file's bytes, or the JSONL line's (without its line break); None: no bytes to keep
    expect: str | None  # None: round-trips exactly; else a piece of the dead-letter reason
    kind: str = "file"  # "fifo": a named pipe; "link:PATH": a symbolic link to PATH
    source: str | None = None  # the dead letter's source, where it is not ``file`` (a name that is not UTF-8)


def png_bytes() -> bytes:
    """A real 2x2 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([255, 0, 0, 0, 255, 0]) for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


CUT = b"A sentence that is cut. " * 2000


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def content(case: Case) -> bytes:
    """What a whole-file case holds once decompressed (what decompress should give back)."""
    if case.file.endswith(".gz"):
        return gzip.decompress(case.raw)
    return case.raw


def text_cases() -> list[Case]:
    """One text file each."""
    sep = "Line.\u2028After U+2028.\u2029After U+2029.\x85After U+0085.\x0bAfter VT.\x0cAfter FF.\u2029\u2029New paragraph.\x0c\x0c"
    cases = [
        ("invalid UTF-8 (.txt)", "invalid-utf8.txt", b"Valid start. \xff\xfe then bytes that are not UTF-8.\n", "invalid UTF-8 at byte 13"),
        ("UTF-8 cut mid-character at the end", "truncated-utf8.txt", "Ends in a euro sign: \u20ac".encode()[:-1], "invalid UTF-8 at byte 21"),
        ("UTF-8-encoded surrogate (CESU-8)", "cesu8.txt", b"A \xed\xa0\x80 surrogate.", "invalid UTF-8 at byte 2"),
        ("Latin-1 text (not UTF-8)", "latin1.txt", "Caf\u00e9 cr\u00e8me.\n".encode("latin-1"), "invalid UTF-8 at byte 3"),
        ("UTF-16 text with its BOM", "utf16.txt", "UTF-16 text.\n".encode("utf-16"), "invalid UTF-8 at byte 0"),
        ("NUL bytes inside text", "nul.txt", b"Before\x00after. A second\x00\x00 sentence.\x00\n", None),
        ("only NUL bytes (1 KB)", "zeros.txt", bytes(1024), None),
        ("PNG image named .txt", "image.txt", png_bytes(), "invalid UTF-8 at byte 0"),
        ("gzip garbage named .txt.gz", "garbage.txt.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "unreadable"),
        ("plain text named .txt.gz", "not-gzip.txt.gz", b"This was never compressed.\n", "unreadable"),
        ("gzip cut short (.txt.gz)", "truncated.txt.gz", gzip.compress(CUT, mtime=0)[: len(gzip.compress(CUT, mtime=0)) // 2], "unreadable"),
        ("bzip2 cut short (.md.bz2)", "truncated.md.bz2", bz2.compress(CUT)[: len(bz2.compress(CUT)) // 2], "unreadable"),
        ("zstd cut short (.txt.zst)", "truncated.txt.zst", _zstd(CUT)[: len(_zstd(CUT)) // 2], "unreadable"),
        ("two gzip members (.txt.gz)", "members.txt.gz", gzip.compress(b"First member. ", mtime=0) + gzip.compress(b"Second.\n", mtime=0), None),
        ("empty file", "empty.txt", b"", None),
        ("whitespace only", "whitespace.txt", " \t\r\n\n \x0b\x0c\u00a0\u3000\u2028\n".encode(), None),
        ("mixed CRLF / LF / CR", "mixed-endings.txt", b"One.\r\nTwo.\nThree.\rFour.\r\n\r\nFive.\n\rSix.\r\r\nSeven\n\n\r", None),
        ("U+2028 U+2029 U+0085 VT FF", "separators.txt", sep.encode(), None),
        ("byte-order mark (.txt)", "bom.txt", b"\xef\xbb\xbfStarts with a byte-order mark.\r\nSecond line.\r\n", None),
        ("byte-order mark only", "bom-only.txt", b"\xef\xbb\xbf", None),
        ("one 300 KB line without spaces", "no-spaces.txt", b"x" * 300_000, None),
    ]
    return [Case(label, name, None, raw, expect) for label, name, raw, expect in cases]


def jsonl_cases() -> list[Case]:
    """The lines of one JSONL file, records.jsonl (numbered from 1, as the store numbers them)."""
    lines = [
        ("byte-order mark before the first JSONL line", b'\xef\xbb\xbf{"id": "bom", "text": "First record, after a byte-order mark."}', None),
        ("invalid UTF-8 inside a JSONL line", b'{"id": "bad-utf8", "text": "bad \xff byte"}', "invalid UTF-8 at byte 32"),
        ("malformed JSONL: unterminated string", b'{"id": "cut", "text": "never closed', "malformed JSON: Unterminated string"),
        ("malformed JSONL: trailing garbage", b'{"id": "extra", "text": "ok"} trailing', "malformed JSON: Extra data"),
        ("malformed JSONL: not JSON", b"just a line of text", "malformed JSON: Expecting value"),
        ("JSONL record without the text field", b'{"id": "no-text", "body": "the text is elsewhere"}', "no 'text' field"),
        ("JSONL text null", b'{"id": "null", "text": null}', "'text' is null, not text"),
        ("JSONL text a number", b'{"id": "number", "text": 42}', "'text' is int, not text"),
        ("JSONL line an array", b'["text", "an array"]', "no 'text' field"),
        ("JSONL \\ud800 escape (lone surrogate)", b'{"id": "surrogate", "text": "half \\ud800 pair"}', "lone surrogate"),
        ("JSONL raw NUL byte in a string", b'{"id": "raw-nul", "text": "a\x00b"}', "malformed JSON: Invalid control character"),
        ("JSONL \\u0000 escapes", b'{"id": "nul", "text": "NUL\\u0000inside.\\u0000"}', None),
        ("JSONL empty text", b'{"id": "empty", "text": ""}', None),
        ("JSONL whitespace-only text", b'{"id": "blank", "text": " \\r\\n\\t\\u2028 "}', None),
        ("JSONL mixed CRLF / LF / CR in text", b'{"id": "endings", "text": "One.\\r\\nTwo.\\nThree.\\rFour.\\r\\n\\r\\nFive."}', None),
        ("JSONL raw U+2028 U+2029 U+0085 in text", '{"id": "seps", "text": "A.\u2028B.\u2029C.\x85D.\\u000bE.\\fF."}'.encode(), None),
        ("JSONL byte-order mark inside the text", b'{"id": "inner-bom", "text": "\\ufeffText with its own BOM."}', None),
        ("byte-order mark before a later JSONL line", b'\xef\xbb\xbf{"id": "late-bom", "text": "A BOM on line 18."}', "malformed JSON: Unexpected UTF-8 BOM"),
    ]
    return [Case(label, "records.jsonl", i, raw, expect) for i, (label, raw, expect) in enumerate(lines, start=1)]


def file_cases() -> list[Case]:
    """Files that are no text file, or whose name is no text: dead letters, never a hang or a stop."""
    name = os.fsdecode(b"name-\xff.txt")  # POSIX names are bytes: this one is not UTF-8
    return [
        Case("file name not UTF-8 (byte \\xff)", name, None, b"Text of a file whose name is not UTF-8.\n",
             "file name is not UTF-8", source="name-\\xff.txt"),
        Case("FIFO (named pipe) named .txt", "pipe.txt", None, None, "not a regular file (a FIFO", kind="fifo"),
        Case("link to /dev/zero named .txt", "zero.txt", None, None, "not a regular file (a character device)",
             kind="link:/dev/zero"),
    ]


def write_cases(folder: Path) -> list[Case]:
    """Write every small case under ``folder``; returns them. records.jsonl's lines end in \\n, \\r\\n or \\r."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = text_cases() + jsonl_cases() + file_cases()
    for case in cases:
        if case.kind == "fifo":
            os.mkfifo(folder / case.file)
        elif case.kind.startswith("link:"):
            os.symlink(case.kind.removeprefix("link:"), folder / case.file)
        elif case.record is None:
            (folder / case.file).write_bytes(case.raw)
    endings = [b"\n", b"\r\n", b"\r"]
    records = [c for c in cases if c.file == "records.jsonl"]
    (folder / "records.jsonl").write_bytes(b"".join(c.raw + endings[i % 3] for i, c in enumerate(records)))
    (folder / "empty.jsonl").write_bytes(b"")
    return cases


def outcomes(store: str, restored: Path, folder: Path, cases: list[Case]) -> list[tuple[Case, str, bool]]:
    """(case, what happened, as expected?) for each case, from the store and a decompressed copy."""
    from hyperscene.transforms.store.reader import StoreVersion

    dead = {(d["source"], d["record"]): d for d in StoreVersion(store).read("dead_letters").to_pylist()}
    restored_records = {}
    if (restored / "records.jsonl").exists():
        for line in (restored / "records.jsonl").read_bytes().decode("utf-8").splitlines():
            obj = json.loads(line)
            restored_records[obj["id"]] = obj["text"]
    result = []
    for case in cases:
        letter = dead.get((case.source or case.file, case.record))
        if letter is not None:
            kept = ("no bytes to keep" if case.raw is None else "raw bytes kept") if letter["raw"] == case.raw else "raw bytes NOT kept"
            outcome = f"dead letter: {letter['reason']} ({kept})"
            ok = case.expect is not None and case.expect in letter["reason"] and letter["raw"] == case.raw
        elif case.record is None:
            path = restored / (case.file[:-3] if case.file.endswith(".gz") else case.file)
            same = path.exists() and path.read_bytes() == content(case)
            outcome = "round-trips exactly" if same else "LOST: neither restored nor dead-lettered"
            ok = same and case.expect is None
        else:
            original = json.loads(case.raw.decode("utf-8-sig"))
            same = restored_records.get(original["id"]) == original["text"]
            outcome = "round-trips exactly (text field)" if same else "LOST: neither restored nor dead-lettered"
            ok = same and case.expect is None
        result.append((case, outcome, ok))
    return result


def huge_document(path: Path, megabytes: int) -> int:
    """One line of prose, ``megabytes`` MB: the sample book's lines joined by spaces, repeated."""
    prose = " ".join(SAMPLE.read_text(encoding="utf-8").split()).encode() + b" "
    size = megabytes * 1_000_000
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = prose[: size - written]
            f.write(piece)
            written += len(piece)
    return written


def peak_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def compress(inputs: list[str], store: str, extra: list[str]) -> dict:
    from hyperscene.pipelines import compress as job

    return job.run([*inputs, "--out", store, *extra])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--huge-mb", type=int, default=200, help="size of the single-line document in MB (0: skip it)")
    p.add_argument("--huge-only", action="store_true", help="skip the small cases (so the peak memory is the huge document's alone)")
    p.add_argument("--max-rss-gb", type=float, default=12,
                   help="stop the huge document's compress past this resident memory, printing where it was (default: 12)")
    p.add_argument("--keep", help="build in this folder and keep it, instead of a temporary one")
    p.add_argument("--segment-only", action="store_true",
                   help="only segment and bucket the huge document, whole and in slices, and print the peak memory of each")
    p.add_argument("--segment-way", choices=("whole", "slices"), help=argparse.SUPPRESS)  # the child process of --segment-only
    args, extra = p.parse_known_args(argv)
    if args.segment_way:
        return segment_memory(args.segment_way, args.huge_mb, int(args.max_rss_gb * 1024))
    if args.segment_only:
        import subprocess

        for way in ("whole", "slices"):  # a fresh process each: peaks do not mix
            subprocess.run([sys.executable, __file__, "--segment-way", way, "--huge-mb", str(args.huge_mb),
                            "--max-rss-gb", str(args.max_rss_gb)], check=True)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hyperscene.pipelines.cliutil import setup_logging

    setup_logging()  # the stages' progress lines, to stderr
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="hyperscene-bad-input-"))
    failed = 0
    if not args.huge_only:
        failed += small_cases(tmp, extra)
    if args.huge_mb:
        failed += huge_case(tmp, args.huge_mb, extra, args.max_rss_gb, None if args.keep else tmp)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def small_cases(tmp: Path, extra: list[str]) -> int:
    from hyperscene.pipelines import decompress

    folder, store, restored = tmp / "corpus", tmp / "store", tmp / "restored"
    cases = write_cases(folder)
    started = time.time()
    manifest = compress([str(folder)], str(store), extra)  # the default embedder: see the static one's NaNs in the tests
    decompress.run([str(store), "--out", str(restored)])
    print(f"small cases: {len(cases)} inputs in {len(list(folder.iterdir()))} files, compress + decompress "
          f"{time.time() - started:.0f} s; {manifest['counts']['documents']} documents, "
          f"{manifest['counts'].get('dead_letters', 0)} dead letters in the manifest\n")
    rows = outcomes(str(store), restored, folder, cases)
    width = max(len(c.label) for c, _, _ in rows)
    print(f"| {'input'.ljust(width)} | outcome |")
    print(f"|{'-' * (width + 2)}|---------|")
    for case, outcome, ok in rows:
        print(f"| {case.label.ljust(width)} | {outcome}{'' if ok else '  <-- NOT AS EXPECTED'} |")
    return sum(not ok for _, _, ok in rows)


def current_rss_mb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def where_now() -> str:
    """The hyperscene and Beam-stage frames of every thread: what the pipeline is doing right now."""
    import traceback

    lines = []
    for frames in sys._current_frames().values():
        for frame in traceback.extract_stack(frames):
            if "/transforms/" in frame.filename or "/pipelines/" in frame.filename:
                lines.append(f"    {Path(frame.filename).name}:{frame.lineno} {frame.name}: {frame.line}")
    return "\n".join(lines) or "    (no hyperscene frame on any thread)"


def sample_rss(samples: list, stop, limit_mb: int, remove: Path | None = None, every: float = 1.0) -> None:
    """(seconds since start, resident MiB) every ``every`` seconds until ``stop`` is set; a line every 15 s.
    Past ``limit_mb`` it prints where every thread is and ends the process (status 3), before the
    machine runs out of memory, removing the folder ``remove`` first."""
    start = last = time.time()
    while not stop.wait(every):
        now = time.time()
        samples.append((now - start, current_rss_mb()))
        if now - last >= 15:
            last = now
            print(f"[rss] {now - start:6.0f} s  {samples[-1][1]:,} MiB", file=sys.stderr, flush=True)
        if samples[-1][1] > limit_mb:
            print(f"\nstopped: resident memory {samples[-1][1]:,} MiB passed --max-rss-gb after {now - start:.0f} s; "
                  f"the pipeline was here:\n{where_now()}", flush=True)
            if remove is not None:
                import shutil

                shutil.rmtree(remove, ignore_errors=True)
            os._exit(3)


def huge_case(tmp: Path, megabytes: int, extra: list[str], limit_gb: float = 12, remove: Path | None = None) -> int:
    import threading

    from hyperscene.pipelines import decompress

    huge_folder = tmp / "huge"
    huge_folder.mkdir(exist_ok=True)
    size = huge_document(huge_folder / "huge.txt", megabytes)
    before = peak_rss_mb()
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(samples, stop, int(limit_gb * 1024), remove), daemon=True)
    sampler.start()
    started = time.time()
    manifest = compress([str(huge_folder / "huge.txt")], str(tmp / "huge-store"), ["--embedder", "static", *extra])
    seconds = time.time() - started
    stop.set()
    sampler.join()
    peak = peak_rss_mb()
    started = time.time()
    result = decompress.run([str(tmp / "huge-store"), "--out", str(tmp / "huge-restored")])
    decompress_s = time.time() - started
    same = _same_file(huge_folder / "huge.txt", tmp / "huge-restored" / "huge.txt")
    c = manifest["counts"]
    print(f"\n{size:,}-byte single-line document: {'round-trips exactly' if same else 'DOES NOT ROUND-TRIP'}; "
          f"{c['units']:,} units, {c['distinct_units']:,} distinct")
    at = max(samples, key=lambda s: s[1]) if samples else (0, 0)
    print(f"compress {seconds:.0f} s, peak resident memory {peak:,} MiB (before it: {before:,} MiB; "
          f"sampled peak {at[1]:,} MiB at {at[0]:.0f} s); decompress {decompress_s:.0f} s "
          f"({result['bytes']:,} bytes), process peak after it {peak_rss_mb():,} MiB")
    print("stage peaks (process peak so far when the stage last reported):")
    for stage, s in manifest["stages"].items():
        print(f"  {stage:<16} {s['seconds']:8.1f} s  {s['items']:>12,} items  peak {s['peak_rss_mb']:>7,} MiB")
    return 0 if same else 1


def segment_memory(way: str, megabytes: int, limit_mb: int) -> int:
    """Segment the huge document and bucket its occurrences as exact dedup does, ``whole`` (one
    table) or in ``slices`` (as the pipeline does); print the peak resident memory above the text
    and the loaded model (sampled every 50 ms; stopped past --max-rss-gb)."""
    import threading

    from hyperscene.transforms.dedup import bucket_count, split_by_bucket
    from hyperscene.transforms.segment import Segmenter, occurrence_table

    with tempfile.TemporaryDirectory(prefix="hyperscene-segment-") as tmp:
        huge_document(Path(tmp) / "huge.txt", megabytes)
        text = (Path(tmp) / "huge.txt").read_text(encoding="utf-8")
    segmenter = Segmenter("en")
    segmenter.nlp  # loaded before the baseline
    base, samples, stop = current_rss_mb(), [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(samples, stop, limit_mb), kwargs={"every": 0.05}, daemon=True)
    sampler.start()
    started, buckets, tables = time.time(), bucket_count(len(text)), []
    slices = [segmenter.segment(text)] if way == "whole" else segmenter.segment_slices(text)
    position = 0
    for seg in slices:
        tables += [t for _, t in split_by_bucket(occurrence_table("huge.txt", seg, position), buckets)]
        position += len(seg.units)
    stop.set()
    sampler.join()
    peak = max((mb for _, mb in samples), default=base)
    print(f"segment and bucket {megabytes} MB, {way}: {position:,} units in {time.time() - started:.0f} s; peak "
          f"{peak - base:,} MiB above the text and model ({base:,} MiB), of which the bucketed tables "
          f"{sum(t.nbytes for t in tables) // 2**20:,} MiB")
    return 0


def _same_file(a: Path, b: Path) -> bool:
    if not b.exists() or a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 24), fb.read(1 << 24)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    sys.exit(main())
