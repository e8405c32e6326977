"""hyperscene report: the page's figures against the store's own tables, self-containment, escaping,
--version, and (where Debian's chromium is installed) a render in a real headless browser.

The store is the sample corpus plus one document full of HTML and control characters, compressed
once for this module with the static embedder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import SAMPLE_CORPUS
from hyperscene.pipelines.cli import main
from hyperscene.schemas import TABLES
from hyperscene.transforms import report_data as rd
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.store.writer import write_table_file

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ["summary", "cluster-sizes", "near-dup-scores", "tokens-by-level", "compression", "hyperword-map",
            "near-dup-groups", "scene-trees"]
PLOTS = ["cluster-sizes", "near-dup-scores", "tokens-by-level", "compression", "hyperword-map"]
HOSTILE = "hostile.txt"
# Sentences that would become markup, an entity, a script or a broken attribute if written unescaped.
HOSTILE_LINES = [
    'The tag <script>alert("owned")</script> must stay text.',
    "A bold <b>claim</b> & an entity &amp; in one line.",
    'Quotes " and \' close an attribute="x" onmouseover="alert(1)".',
    "A bell \x07 and an escape \x1b[31m are control characters.",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from hyperscene.pipelines import compress

    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copytree(SAMPLE_CORPUS, corpus, dirs_exist_ok=True)
    # Repeated with small changes, so its lines recur as units, hyperword representatives and near duplicates.
    text = "\n".join(f"{line} Number {i % 3}." for i in range(12) for line in HOSTILE_LINES)
    (corpus / HOSTILE).write_text(text, encoding="utf-8")
    out = tmp_path_factory.mktemp("report") / "store"
    compress.run([str(corpus), "--out", str(out), "--embedder", "static"])
    return out


@pytest.fixture(scope="module")
def page(store, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("page") / "report.html"
    assert main(["report", str(store), "--out", str(out), "--doc", HOSTILE, "--doc", "alice-in-wonderland.txt"]) == 0
    return out.read_text(encoding="utf-8")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the id of the section each one is in."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict, str | None]] = []
        self.section: str | None = None
        self.text: dict[str | None, list[str]] = {}
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        self.stack.append(tag)
        self.tags.append((tag, attrs, self.section))

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        self.text.setdefault(self.section, []).append(data)


def parse(page: str) -> Elements:
    p = Elements()
    p.feed(page)
    return p


def titles(page: str, section: str) -> list[str]:
    """The hover texts (SVG <title>) of one section, unescaped."""
    import html

    body = page.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    return [html.unescape(t) for t in re.findall(r"<title>(.*?)</title>", body, re.S)]


def test_page_has_every_section_and_plot(page):
    parsed = parse(page)
    ids = [attrs.get("id") for tag, attrs, _ in parsed.tags if tag == "section"]
    assert ids == SECTIONS
    for section in PLOTS:
        assert any(tag == "svg" and where == section for tag, _, where in parsed.tags), section


def test_page_is_self_contained(page):
    parsed = parse(page)
    for tag, attrs, _ in parsed.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name in ("src", "href", "xlink:href", "srcset", "action"):
            assert name not in attrs or not re.match(r"\s*(https?:)?//", attrs[name]), (tag, attrs)
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style and "@import" not in style
    # The only URL is SVG's namespace name, an identifier that no browser fetches.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}


def test_store_text_is_escaped(page):
    parsed = parse(page)
    assert not any(tag == "script" for tag, _, _ in parsed.tags)
    assert not any("onmouseover" in attrs for _, attrs, _ in parsed.tags)
    assert "<b>claim" not in page and "\x07" not in page and "\x1b" not in page
    shown = "".join(parsed.text.get("scene-trees", []))  # text after unescaping, in the hostile document's tree
    assert '<script>alert("owned")</script>' in shown
    assert "<b>claim</b> & an entity &amp;" in shown
    assert "\\x1b[31m" in shown  # a control character written visibly


def test_cluster_histogram_counts_every_hyperword(page, store):
    hyperwords = StoreVersion(str(store)).read("hyperwords", ["unit_count"])["unit_count"].to_numpy()
    bars = [t for t in titles(page, "cluster-sizes") if " hyperwords with " in t]
    assert sum(int(t.split()[0].replace(",", "")) for t in bars) == len(hyperwords)
    biggest = bars[-1].split(" with ")[1].split()[0]
    lo, hi = (int(x) for x in biggest.split("–")) if "–" in biggest else (int(biggest),) * 2
    assert lo <= hyperwords.max() <= hi


def test_similarity_histogram_counts_every_merge_and_marks_the_threshold(page, store):
    sv = StoreVersion(str(store))
    scores = sv.read("provenance", ["score"])["score"].to_numpy()
    assert len(scores) > 0
    bars = [t for t in titles(page, "near-dup-scores") if t.startswith("cosine ")]
    assert sum(int(t.split(": ")[1].split()[0].replace(",", "")) for t in bars) == len(scores)
    threshold = sv.manifest["config"]["near_dup_threshold"]
    assert f"threshold {threshold:g}" in titles(page, "near-dup-scores")


def test_map_draws_each_nonempty_hyperword_with_its_text(page, store):
    hw = StoreVersion(str(store)).read("hyperwords", ["hyperword", "unit_count", "representative_text"]).to_pylist()
    points = [t for t in titles(page, "hyperword-map") if t.startswith("hyperword ")]
    live = [h for h in hw if h["unit_count"] > 0]
    assert len(points) == len(live)
    first = {int(t.split(":")[0].split()[1]): t for t in points}
    for h in live:
        assert first[h["hyperword"]].startswith(f"hyperword {h['hyperword']}: {h['unit_count']:,} distinct units")
        assert " ".join(h["representative_text"].split())[:60].replace("\x07", "\\x07").replace("\x1b", "\\x1b") \
            in first[h["hyperword"]]


def test_max_points_caps_the_map_and_says_so(store, tmp_path):
    out = tmp_path / "small.html"
    assert main(["report", str(store), "--out", str(out), "--max-points", "5", "--trees", "1"]) == 0
    page = out.read_text(encoding="utf-8")
    assert len([t for t in titles(page, "hyperword-map") if t.startswith("hyperword ")]) == 5
    total = sum(1 for n in StoreVersion(str(store)).read("hyperwords", ["unit_count"])["unit_count"].to_pylist() if n)
    assert f"The 5 largest of {total:,} hyperwords are drawn" in page
    assert page.count('class="tree"') == 1


def test_largest_near_dup_group_is_listed_first(page, store):
    sv = StoreVersion(str(store))
    from hyperscene.transforms.unit_ids import unit_hex

    prov = [unit_hex(u) for u in sv.read("provenance", ["canonical_unit_id"])["canonical_unit_id"].to_pylist()]
    sizes = {c: prov.count(c) for c in set(prov)}
    body = page.split('<section id="near-dup-groups">', 1)[1]
    first = re.search(r'class="canon" title="([0-9a-f]+)"', body).group(1)
    assert sizes[first] == max(sizes.values())
    assert re.search(rf"{sizes[first]:,} merged unit\(s\)", body)


def test_trees_of_the_chosen_documents(page, store):
    scenes = StoreVersion(str(store)).read("scenes", ["doc_id", "level", "parent_scene_id"]).to_pylist()
    root = max(s["level"] for s in scenes if s["doc_id"] == "alice-in-wonderland.txt")
    body = page.split('<section id="scene-trees">', 1)[1]
    assert body.index(HOSTILE) < body.index("alice-in-wonderland.txt")  # in the order asked for
    assert f"<b>L{root}.0</b>" in body


def test_deleted_documents_get_no_tree(store, tmp_path):
    """Format 3 keeps a deleted document's row with deleted = true: it is not drawn."""
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    version = copy / "v000001"
    manifest = json.loads((version / "manifest.json").read_text())
    docs = StoreVersion(str(copy)).read("documents")
    deleted = [d == "alice-in-wonderland.txt" for d in docs["doc_id"].to_pylist()]
    if "deleted" in docs.column_names:
        docs = docs.set_column(docs.schema.get_field_index("deleted"), "deleted", pa.array(deleted))
    else:
        docs = docs.append_column("deleted", pa.array(deleted))
    schema = pa.schema([TABLES["documents"].field(n) if n in TABLES["documents"].names else docs.schema.field(n)
                        for n in docs.column_names])
    entry = write_table_file(str(version), "documents", 0, docs.cast(schema))
    manifest["files"] = [entry if f["path"] == entry["path"] else f for f in manifest["files"]]
    (version / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "r.html"
    assert main(["report", str(copy), "--out", str(out), "--trees", "2"]) == 0
    body = out.read_text(encoding="utf-8").split('<section id="scene-trees">', 1)[1]
    assert "alice-in-wonderland.txt" not in body and body.count('class="tree"') == 2


def test_version_option(store, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    shutil.copytree(copy / "v000001", copy / "v000002")
    manifest = json.loads((copy / "v000002" / "manifest.json").read_text())
    (copy / "v000002" / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    assert main(["report", str(copy), "--out", str(tmp_path / "latest.html"), "--trees", "0"]) == 0
    assert "v2</title>" in (tmp_path / "latest.html").read_text(encoding="utf-8")
    assert main(["report", str(copy), "--out", str(tmp_path / "one.html"), "--version", "1", "--trees", "0"]) == 0
    assert "v1</title>" in (tmp_path / "one.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(copy), "--out", str(tmp_path / "x.html"), "--version", "7"]) == 2
    err = capsys.readouterr().err
    assert "has no version 7 (has: 1, 2)" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}"], "is a directory"),
    (["--out", "{tmp}/no/such/folder/r.html"], "does not exist"),
    (["--out", "{tmp}/exists.html"], "exists: add --overwrite to replace it"),
    (["--out", "{tmp}/r.html", "--max-points", "-1"], "--max-points must be 0 or more"),
    (["--out", "{tmp}/r.html", "--doc", "nope.txt"], "no document 'nope.txt'"),
])
def test_bad_options_are_one_line_errors(store, tmp_path, capsys, args, message):
    (tmp_path / "exists.html").write_text("a file the user keeps")
    code = main(["report", str(store), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_report_never_replaces_a_file_unasked_nor_writes_inside_the_store(store, tmp_path, capsys):
    kept = tmp_path / "kept.html"
    kept.write_text("a file the user keeps")
    manifest = next(store.glob("v*/manifest.json"))
    before = manifest.read_bytes()
    for out, extra, message in ((kept, [], "exists: add --overwrite"), (manifest, ["--overwrite"], "is inside the store"),
                                (store / "report.html", [], "is inside the store")):
        assert main(["report", str(store), "--out", str(out), *extra]) == 2
        assert message in capsys.readouterr().err
    assert kept.read_text() == "a file the user keeps" and manifest.read_bytes() == before
    assert not (store / "report.html").exists()
    assert main(["report", str(store), "--out", str(kept), "--overwrite", "--trees", "0"]) == 0
    assert kept.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_store_without_units(tmp_path):
    """Empty and whitespace-only documents: no units, hyperwords or scenes, and still a whole page."""
    from hyperscene.pipelines import compress

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_text("")
    (tmp_path / "in" / "blank.txt").write_text(" \n\t")
    compress.run([str(tmp_path / "in"), "--out", str(tmp_path / "store"), "--embedder", "static"])
    assert main(["report", str(tmp_path / "store"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert [attrs.get("id") for tag, attrs, _ in parse(page).tags if tag == "section"] == SECTIONS
    assert "The codebook is empty" in page and "No non-empty hyperwords to draw" in page
    assert "No near-duplicate merges" in page and "No document with units to draw" in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_page_renders_in_headless_chromium(page, tmp_path):
    """The page as a browser builds it: every SVG survives parsing, and the screenshot is not blank."""
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count("<svg") == page.count("<svg") == len(PLOTS)
    assert dom.count("<circle") == page.count("<circle")
    png = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={png}", "--window-size=1400,3000", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pil = pytest.importorskip("PIL.Image")
    pixels = np.asarray(pil.open(png).convert("L"))
    assert pixels.shape == (3000, 1400)
    # Plots fill the page: a good share of it is not background white.
    assert (pixels < 200).mean() > 0.02


# ---------------------------------------------------------------------------------------------------
# The figures, on hand-made numbers


def test_size_bins_are_powers_of_two_and_count_everything():
    bins = rd.size_bins([0, 1, 1, 2, 3, 4, 7, 8, 100])
    assert [(b["label"], b["count"]) for b in bins] == [("0", 1), ("1", 2), ("2–3", 2), ("4–7", 2), ("8–15", 1),
                                                       ("16–31", 0), ("32–63", 0), ("64–127", 1)]
    assert rd.size_bins([]) == []


def test_histogram_counts_values_outside_the_range_in_the_edge_bins():
    edges, counts = rd.histogram([0.95, 0.951, 0.97, 0.999, 1.0001, 0.5], 0.95, 1.0, 0.01)
    assert np.allclose(edges, [0.95, 0.96, 0.97, 0.98, 0.99, 1.0])
    assert counts.tolist() == [3, 0, 1, 0, 2]
    assert rd.score_range([0.97], 0.95, 0.005) == (pytest.approx(0.945), 1.0)
    assert rd.score_range([], 0.92, 0.005) == (pytest.approx(0.915), 1.0)
    assert rd.score_range([0.96, 1.0002], 0.95, 0.005) == (pytest.approx(0.945), pytest.approx(1.005))


def test_tokens_by_level_weights_units_by_their_occurrences():
    rows = rd.tokens_by_level([10, 2], [1, 3], [1, 1, 2], [12, 4, 16])
    assert rows[0]["count"] == 4 and rows[0]["mean"] == pytest.approx(4.0) and rows[0]["median"] == 2
    assert [(r["level"], r["count"], r["mean"]) for r in rows[1:]] == [(1, 2, 8.0), (2, 1, 16.0)]


def test_compression_rows_bits_per_token():
    rows = rd.compression_rows([{"level": 0, "records": "units", "count": 10, "mean_tokens": 8.0, "codebook_size": 256,
                                 "stream_length": 10}])
    assert rows[0]["tokens_per_code"] == 8.0 and rows[0]["bits_per_token"] == pytest.approx(1.0)


def test_pca_finds_the_main_direction_with_a_fixed_sign():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    direction = np.array([3.0, -4.0, 0.0]) / 5
    x = np.outer(t, direction) + rng.normal(scale=0.01, size=(200, 3))
    p = rd.pca_2d(x)
    assert p.explained[0] > 0.99
    assert abs(np.corrcoef(p.coords[:, 0], t)[0, 1]) > 0.999
    q = rd.pca_2d(-x)  # mirrored input: the same axes up to the data's own sign, never flipped by SVD
    assert np.allclose(q.coords[:, 0], -p.coords[:, 0], atol=1e-9)
    assert rd.pca_2d(np.zeros((0, 3))).coords.shape == (0, 2)
    assert rd.pca_2d(np.ones((1, 3))).coords.tolist() == [[0.0, 0.0]]


def test_near_dup_groups_order_and_samples():
    members = ["a1", "a2", "a3", "a4", "b1", "b2", "c1", "c2"]
    canonicals = ["A", "A", "A", "A", "B", "B", "C", "C"]
    scores = [0.93, 0.99, 0.95, 0.97, 0.96, 0.98, 0.97, 0.97]
    occurrences = {"A": 1, "B": 1, "C": 5, "a1": 1, "a2": 1, "a3": 1, "a4": 1, "b1": 1, "b2": 1, "c1": 1, "c2": 1}
    groups = rd.near_dup_groups(members, canonicals, scores, occurrences, top=2)
    assert [g["canonical_unit_id"] for g in groups] == ["A", "C"]  # C beats B on occurrences
    assert groups[0]["members"] == 4 and groups[0]["occurrences"] == 5
    assert [s["unit_id"] for s in groups[0]["samples"]] == ["a1", "a4", "a2"]  # lowest, between, highest
    assert (groups[0]["min_score"], groups[0]["max_score"]) == (0.93, 0.99)


def test_terminal_and_page_never_carry_control_characters(tmp_path, capsys):
    """Issue 14, item 4: a document id and texts holding ESC and BEL sequences (a window title,
    clear screen) reach neither the terminal (inspect --docs, inspect --doc) nor the page raw."""
    from hyperscene.pipelines import compress

    name = "title\x1b]0;pwned\x07.txt"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_text("Clear \x1b[2J the screen now. " * 20 + "\nA bell \x07 rings twice. " * 10)
    compress.run([str(tmp_path / "in"), "--out", str(tmp_path / "store"), "--embedder", "static"])
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "store"), "--docs"]) == 0
    listed = capsys.readouterr().out
    assert "\x1b" not in listed and "\x07" not in listed and "title\\x1b]0;pwned\\x07.txt" in listed
    assert main(["inspect", str(tmp_path / "store"), "--doc", name, "--width", "200"]) == 0
    tree = capsys.readouterr().out
    assert "\x1b" not in tree and "\x07" not in tree and "\\x1b[2J" in tree and tree.startswith("title\\x1b]0;pwned")
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "store"), "--out", str(out), "--doc", name]) == 0
    page = out.read_text(encoding="utf-8")
    assert "\x1b" not in page and "\x07" not in page and "title\\x1b]0;pwned\\x07.txt" in page
