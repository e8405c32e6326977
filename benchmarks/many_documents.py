"""Compress many short JSONL documents and print what each document costs beyond the stages' own work.

    python benchmarks/many_documents.py --docs 2000,20000,100000          # static embedder, DirectRunner
    python benchmarks/many_documents.py --docs 20000 -- --runner DaskRunner --workers 2
    python benchmarks/many_documents.py --docs 100000 --joined 100   # and the same text as 100 documents
    python benchmarks/many_documents.py --docs 100000,1000000 --records clauses

The documents are the sentences of en-gutenberg's files in name order, grouped one to three to a
record (ids d0000000, ...), so they are short (about 100 to 300 bytes) and real. With ``--records
clauses`` each record is one clause-sized piece instead, the text up to the next ``, ; : . ! ?``
(about 45 bytes): en-gutenberg holds about 1,047,000 of them, enough for a million records without
repeating any text, where it holds only about 163,000 of the sentence records. Each size is
compressed in a fresh process with ``--embedder static`` (flags after ``--`` are added). Prints per
size: wall seconds of compress, the stages' own seconds (summed over workers), the rest per
document in milliseconds, and the peak resident memory of the process tree (launcher and workers).

``--joined N`` also compresses the same records' texts joined, in order, into N documents (blank
lines between records) and prints their rest beside: what the many documents' rest has beyond it,
over the number of documents, is what a document costs as such, apart from what its text costs
(its units, tables and shuffles) whoever holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "en-gutenberg"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
CLAUSE_END = re.compile(r"(?<=[.!?,;:])\s+")


def write_documents(corpus: Path, n: int, path: Path, records: str = "sentences") -> int:
    """``n`` JSONL records of one to three consecutive sentences (or of one clause each); returns
    their text bytes."""
    split, shortest = (SENTENCE_END, 21) if records == "sentences" else (CLAUSE_END, 1)
    written, total = 0, 0
    with open(path, "w", encoding="utf-8") as out:
        for f in sorted(corpus.glob("*.txt")):
            sentences = [" ".join(s.split()) for s in split.split(f.read_text(encoding="utf-8"))]
            sentences = [s for s in sentences if len(s) >= shortest]
            i = 0
            while i < len(sentences) and written < n:
                take = 1 + written % 3 if records == "sentences" else 1
                text = " ".join(sentences[i : i + take])
                out.write(json.dumps({"id": f"d{written:07d}", "text": text}, ensure_ascii=False) + "\n")
                total += len(text.encode("utf-8"))
                written, i = written + 1, i + take
            if written >= n:
                return total
    raise SystemExit(f"{corpus} has fewer than {n} such records")


def join_documents(path: Path, n_joined: int, out: Path) -> int:
    """The records of ``path`` joined, in order, into ``n_joined`` records of about equal count."""
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    per = -(-len(texts) // n_joined)
    with open(out, "w", encoding="utf-8") as f:
        for j, start in enumerate(range(0, len(texts), per)):
            f.write(json.dumps({"id": f"j{j:05d}", "text": "\n\n".join(texts[start : start + per])}, ensure_ascii=False) + "\n")
    return len(range(0, len(texts), per))


def compress_once(docs: Path, store: Path, extra: list[str]) -> dict:
    """Run compress in a child process; its result, wall seconds and peak memory of its process tree."""
    code = (
        "import json, sys\n"
        "from hyperscene.pipelines import cliutil, compress\n"
        "cliutil.setup_logging()\n"
        "r = compress.run(sys.argv[1:])\n"
        "print('RESULT ' + json.dumps({'stages': r['stages'], 'counts': r['counts']}))\n"
    )
    argv = [str(docs), "--out", str(store), "--embedder", "static", "--id-field", "id", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    # ru_maxrss of children: the largest single process that ended (launcher or a worker).
    result["peak_mb"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    result["wall"] = wall
    return result


def _row(n: int, size: int, r: dict) -> dict:
    stage_s = sum(s["seconds"] for s in r["stages"].values())
    return {"documents": n, "input_bytes": size, "wall_s": round(r["wall"], 1), "stages_s": round(stage_s, 1),
            "rest_ms_per_document": round((r["wall"] - stage_s) / n * 1000, 3), "peak_mb": round(r["peak_mb"]),
            "stages": r["stages"], "counts": r["counts"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", default="2000,20000", help="document counts, comma-separated (default: 2000,20000)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--records", choices=("sentences", "clauses"), default="sentences",
                   help="what a record holds: one to three sentences (default) or one clause")
    p.add_argument("--joined", type=int, help="also compress the same text joined into this many documents")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args, extra = p.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    rows = []
    print(f"{'documents':>10} {'input MB':>9} {'wall s':>8} {'stages s':>9} {'rest ms/doc':>12} {'peak MB':>8}")
    for n in (int(x) for x in args.docs.split(",")):
        with tempfile.TemporaryDirectory(prefix="hyperscene-many-") as tmp:
            docs = Path(tmp) / "many" / "docs.jsonl"
            docs.parent.mkdir()
            size = write_documents(args.corpus, n, docs, args.records)
            r = compress_once(docs, Path(tmp) / "store", extra)
            row = _row(n, size, r)
            if args.joined:
                joined = Path(tmp) / "joined" / "docs.jsonl"
                joined.parent.mkdir()
                n_joined = join_documents(docs, args.joined, joined)
                row["joined"] = _row(n_joined, joined.stat().st_size, compress_once(joined, Path(tmp) / "store-joined", extra))
        rows.append(row)
        print(f"{n:>10,} {size / 1e6:>9.1f} {row['wall_s']:>8.1f} {row['stages_s']:>9.1f} {row['rest_ms_per_document']:>12.3f} "
              f"{row['peak_mb']:>8.0f}", flush=True)
        if args.joined:
            j = row["joined"]
            rest, rest_joined = row["wall_s"] - row["stages_s"], j["wall_s"] - j["stages_s"]
            print(f"{'joined':>10} {'':>9} {j['wall_s']:>8.1f} {j['stages_s']:>9.1f}   the same text as {j['documents']:,} documents: "
                  f"rest {rest_joined:.1f} s against {rest:.1f} s, {(rest - rest_joined) / n * 1000:.3f} ms per document beyond",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
