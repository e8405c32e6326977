"""Export a store in every format and load each export back with Hugging Face ``datasets``.

    python benchmarks/export_check.py STORE [--out DIR] [--level 1]

For text, hyperwords (level 0 and ``--level``) and pairs (``--level``): the export's closing line
(tokens in and out), then what ``datasets.load_dataset`` made of the files: splits, rows, columns.
``datasets`` must be installed (the test extra has it); it runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--out", type=Path, help="keep the exports here (default: a temporary folder)")
    ap.add_argument("--level", type=int, default=1, help="scene level of the second hyperwords export and of the pairs")
    args = ap.parse_args()
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    work = args.out or Path(tempfile.mkdtemp(prefix="export-check-"))
    runs = [("text", []), ("hyperwords", ["--level", "0"]), ("hyperwords", ["--level", str(args.level)]),
            ("pairs", ["--level", str(args.level)])]
    for fmt, extra in runs:
        out = work / f"{fmt}{'-' + extra[1] if extra else ''}"
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "hyperscene.pipelines.cli", "export", args.store, "--format", fmt,
                               "--out", str(out), *extra], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"export {fmt} failed:\n{done.stderr[-2000:]}")
        closing = [line for line in done.stdout.splitlines() if line.strip()]
        data = datasets.load_dataset(str(out))
        splits = {name: (split.num_rows, split.column_names) for name, split in data.items()}
        print(json.dumps({"format": fmt, "options": extra, "closing": closing[-2:],
                          "datasets": {k: {"rows": r, "columns": c} for k, (r, c) in splits.items()}}, ensure_ascii=False))
    if not args.out:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
