"""Peak disk use of a compress against its input: what the free-space check and the README assume.

    python benchmarks/disk_use.py --tokens 1M                  # first 1M tokens of en-gutenberg, default model
    python benchmarks/disk_use.py --tokens 200k -- --embedder static

Compresses a slice (whole files in name order, as benchmarks/compress_slice.py cuts it) while a
thread adds up the bytes of every file under the store ten times a second. Prints the input's bytes,
the peak bytes under the store (the version being written plus its scratch, ``_work``), the published
store's bytes, and each against the input. Arguments after ``--`` go to compress.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compress_slice import DEFAULT_CORPUS, make_slice, parse_tokens  # noqa: E402


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while we looked
                pass
    return total


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--tokens", default="1M", help="slice size: 200k, 1M, ... or all")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hyperscene.pipelines import compress

    with tempfile.TemporaryDirectory(prefix="hyperscene-disk-") as tmp:
        corpus, store = Path(tmp) / "corpus", Path(tmp) / "store"
        _, tokens = make_slice(args.corpus, parse_tokens(args.tokens), corpus)
        input_bytes = tree_bytes(corpus)
        peak, stop = [0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tree_bytes(store))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.time()
        try:
            compress.run([str(corpus), "--out", str(store), *extra])
        finally:
            stop.set()
            sampler.join()
        stored = tree_bytes(store)
        print(f"input: {tokens:,} tokens, {input_bytes:,} bytes ({' '.join(extra) or 'default settings'}); "
              f"compress {time.time() - started:.0f} s")
        print(f"peak under the store: {peak[0]:,} bytes = {peak[0] / input_bytes:.1f} x the input")
        print(f"published store:      {stored:,} bytes = {stored / input_bytes:.1f} x the input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
