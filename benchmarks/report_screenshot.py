"""Write a store's report and render it in headless chromium (Debian's), to look at the page as a browser draws it.

    python benchmarks/report_screenshot.py STORE --png report.png          # the report goes next to it, report.html
    python benchmarks/report_screenshot.py STORE --png shot.png --window 1400x6000 -- --max-points 500

Prints the page's size and the time each step took. Chromium comes from `apt-get install chromium`;
the command runs it with --headless --no-sandbox --disable-gpu and a throwaway profile.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium(given: str | None) -> str:
    for name in ([given] if given else CHROMIUM_NAMES):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("report_screenshot: no chromium found (on Debian: apt-get install chromium), or pass --chromium PATH")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--png", type=Path, required=True, help="screenshot to write")
    ap.add_argument("--html", type=Path, help="where the report goes (default: next to the PNG, same name, .html)")
    ap.add_argument("--window", default="1400x4000", help="browser window WIDTHxHEIGHT in pixels (default: 1400x4000)")
    ap.add_argument("--chromium", help="chromium executable (default: chromium on the PATH)")
    ap.epilog = "Arguments after -- go to hyperscene report."
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.report_args = argv[cut + 1:]
    width, _, height = args.window.partition("x")
    if not (width.isdigit() and height.isdigit()):
        ap.error(f"--window is WIDTHxHEIGHT, e.g. 1400x4000, not {args.window!r}")
    chromium = find_chromium(args.chromium)
    html = args.html or args.png.with_suffix(".html")

    from hyperscene.pipelines.cli import main as hyperscene

    start = time.perf_counter()
    code = hyperscene(["report", args.store, "--out", str(html), "--overwrite", *args.report_args])
    if code:
        return code
    report_s = time.perf_counter() - start

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                               "--hide-scrollbars", f"--screenshot={args.png.resolve()}", f"--window-size={width},{height}",
                               html.resolve().as_uri()], capture_output=True, text=True, timeout=300)
    render_s = time.perf_counter() - start
    if done.returncode or not args.png.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode or 1
    print(f"report: {html} ({html.stat().st_size:,} bytes) in {report_s:.1f} s; "
          f"screenshot: {args.png} ({width}x{height}) in {render_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
