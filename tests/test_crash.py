"""Crash safety (issue 5, part 4): a real SIGKILL of ``hyperscene compress`` or ``refresh`` at any
moment leaves the last published version readable, decompressible and verifiable, and a re-run
completes the work.

Each test runs the command as a subprocess (``python -m hyperscene.pipelines.cli``), watches the
store's files and SIGKILLs the process group at a chosen point (see ``crashkit``); the readers and
the re-run then run in this process through the CLI's ``main``, which is what the command calls.
The compress part (``-k compress``, 6 tests, 8 killed runs) took 188 s on 2 shared cores: a killed
run spends most of its time starting (imports, model, pipeline: 13-20 s before its first file).
Run with ``-s`` to see, for every kill, what was on disk.

The manifest's temporary file is written and renamed within microseconds, too quick for a poll to
catch; the "before-publish" point is the moment just before it instead: every table with rows
written, the empty tables and the manifest still to come.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SAMPLE_CORPUS, files_under
from crashkit import (
    Outcome,
    Point,
    Run,
    after_first_write,
    after_start,
    before_publish,
    command,
    published,
    run_until,
    scan,
    snapshot,
    spilled_vectors,
    table_files_without_manifest,
    vdir,
    wdir,
)
from hyperscene.pipelines.cli import main
from hyperscene.transforms.store.layout import published_versions

KINDS = ["compress", "refresh"]
POINTS = ["start", "scratch", "tables", "before-publish", "published"]
RANDOM_SEED = 5
# more kills, for a longer soak of the random test: HYPERSCENE_CRASH_KILLS=20 pytest tests/test_crash.py -k random
RANDOM_KILLS = int(os.environ.get("HYPERSCENE_CRASH_KILLS", "3"))
RANDOM_STRETCH = 1.2
START_SECONDS = 1.0


@dataclass
class Corpus:
    first: Path  # the documents of version 1
    grown: Path  # the same plus one more: the whole corpus a refresh is given
    v1: dict[str, bytes]  # what decompress of version 1 gives back
    v2: dict[str, bytes]  # and of version 2, after the refresh


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("crash-corpus")
    first, grown = root / "first", root / "grown"
    first.mkdir()
    for name in ("alice-in-wonderland.txt", "sign-of-the-four.md"):
        shutil.copy(SAMPLE_CORPUS / name, first / name)
    shutil.copytree(first, grown)
    (grown / "origin-of-species.txt").write_bytes(gzip.decompress((SAMPLE_CORPUS / "origin-of-species.txt.gz").read_bytes()))
    return Corpus(first, grown, files_under(first), files_under(grown))


def compress_args(corpus: Corpus, store: Path) -> list[str]:
    return ["compress", str(corpus.first), "--out", str(store), "--embedder", "static"]


def refresh_args(corpus: Corpus, store: Path) -> list[str]:
    return ["refresh", str(store), str(corpus.grown)]


@dataclass
class Published:
    """A run killed as soon as its manifest was published (the "published" point, run once per
    command): what it left, and the timings and file list the other points are set from."""

    store: Path
    outcome: Outcome
    version: int
    data_files: frozenset[str]  # files with rows that its manifest lists, relative to the store

    @property
    def active_seconds(self) -> float:
        """From the run's first file in its version's folder or scratch to its manifest: where the
        store changes (before it, the run holds at most the lock)."""
        return self.outcome.timeline[f"{vdir(self.version)}/manifest.json"] - self.outcome.first_write_at


def _kill_once_published(argv: list[str], store: Path, version: int, log_dir: Path) -> Published:
    outcome = run_until(command(*argv), store, point("published"), version, log_dir)
    manifest = json.loads((store / vdir(version) / "manifest.json").read_text())
    return Published(store, outcome, version, frozenset(f"{vdir(f.get('version', version))}/{f['path']}"
                                                        for f in manifest["files"] if f["rows"]))


@pytest.fixture(scope="module")
def compress_published(corpus, tmp_path_factory) -> Published:
    root = tmp_path_factory.mktemp("crash-compress-published")
    return _kill_once_published(compress_args(corpus, root / "store"), root / "store", 1, root / "logs")


@pytest.fixture(scope="module")
def v1_store(corpus, tmp_path_factory) -> Path:
    """Version 1 by a compress that ran to its end: where every refresh test starts."""
    store = tmp_path_factory.mktemp("crash-v1") / "store"
    assert main(compress_args(corpus, store)) == 0
    return store


@pytest.fixture(scope="module")
def refresh_published(corpus, v1_store, tmp_path_factory) -> Published:
    root = tmp_path_factory.mktemp("crash-refresh-published")
    shutil.copytree(v1_store, root / "store")
    return _kill_once_published(refresh_args(corpus, root / "store"), root / "store", 2, root / "logs")


@dataclass
class Scenario:
    kind: str
    store: Path
    argv: list[str]
    version: int  # the version the command publishes
    before: dict[int, dict[str, bytes]]  # published versions before it runs -> their documents
    after: dict[int, dict[str, bytes]]  # once it has run
    published: Published


def scenario(kind: str, request, corpus: Corpus, tmp_path: Path) -> Scenario:
    store = tmp_path / "store"
    if kind == "compress":
        return Scenario(kind, store, compress_args(corpus, store), 1, {}, {1: corpus.v1},
                        request.getfixturevalue("compress_published"))
    shutil.copytree(request.getfixturevalue("v1_store"), store)
    return Scenario(kind, store, refresh_args(corpus, store), 2, {1: corpus.v1}, {1: corpus.v1, 2: corpus.v2},
                    request.getfixturevalue("refresh_published"))


def point(name: str, sc: Scenario | None = None) -> Point:
    if name == "start":
        return Point(name, f"{START_SECONDS} s after start (importing)", after_start(START_SECONDS))
    if name == "scratch":
        return Point(name, "the version's scratch holds a spilled vector file", spilled_vectors)
    if name == "tables":
        return Point(name, "the version folder holds a table file and no manifest", table_files_without_manifest)
    if name == "before-publish":
        return Point(name, "manifest.json.tmp, or every table with rows written and no manifest",
                     before_publish(sc.published.data_files))
    assert name == "published"
    return Point(name, "manifest.json published, the process not yet exited", published)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def assert_store_serves(store: Path, expected: dict[int, dict[str, bytes]], tmp_path: Path, capsys, label: str) -> None:
    """The store publishes exactly ``expected``'s versions; log lists them, and each decompresses to
    its documents and verifies. With none published, every reader says so cleanly."""
    assert published_versions(str(store)) == sorted(expected), f"{label}: published versions"
    code, out, err = cli(capsys, "log", str(store), "--json")
    if expected or code == 0:
        assert code == 0, f"{label}: log: {err}"
        rows = json.loads(out)["versions"]
        assert [r["version"] for r in rows if r["status"] == "published"] == sorted(expected), rows
        assert all(r["status"] in ("published", "unpublished") for r in rows), rows
    else:
        assert code == 2 and "holds no store versions" in err, f"{label}: log: {code} {err}"
    if not expected:
        for args in (["decompress", str(store), "--out", str(tmp_path / f"restored-{label}")], ["verify", str(store)]):
            code, out, err = cli(capsys, *args)
            assert code == 2 and "no published store version" in err, f"{label}: {args[0]}: {code} {out} {err}"
        return
    for version, documents in sorted(expected.items()):
        restored = tmp_path / f"restored-{label}-v{version}"
        code, _, err = cli(capsys, "decompress", str(store), "--version", str(version), "--out", str(restored))
        assert code == 0, f"{label}: decompress --version {version}: {err}"
        assert files_under(restored) == documents, f"{label}: version {version} does not give its documents back"
        code, out, err = cli(capsys, "verify", str(store), "--version", str(version))
        assert code == 0, f"{label}: verify --version {version}: {out} {err}"


def assert_left_at(name: str, outcome: Outcome, version: int) -> None:
    """What the kill left shows it happened at the point named."""
    v, w = vdir(version), wdir(version)
    manifest = f"{v}/manifest.json" in outcome.left
    if name == "start":
        assert not any(p == v or p.startswith((v + "/", w)) for p in outcome.new), sorted(outcome.new)
    elif name == "scratch":
        assert any(p.startswith(w + "/") and p.endswith(".npy") for p in outcome.left) and not manifest
    elif name == "tables":
        assert any(p.startswith(v + "/") and p.endswith(".parquet") for p in outcome.left) and not manifest
    elif name == "before-publish":
        assert not manifest
    else:
        assert manifest


def report(kind: str, name: str, outcome: Outcome, version: int, after_kill: str, rerun: str) -> None:
    print(f"\nCRASH | {kind} | {name} | {outcome.describe(version)} | {after_kill} | {rerun}")


@pytest.mark.parametrize("name", POINTS)
@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_a_point_keeps_the_last_version_and_a_rerun_completes(kind, name, corpus, request, tmp_path, capsys):
    sc = scenario(kind, request, corpus, tmp_path)
    at = point(name, sc)
    if name == "published":  # run once per command, by the fixture the other points take their timings from
        shutil.rmtree(sc.store, ignore_errors=True)
        shutil.copytree(sc.published.store, sc.store)
        outcome = sc.published.outcome
    else:
        outcome = run_until(command(*sc.argv), sc.store, at, sc.version, tmp_path / "logs")
    assert outcome.killed, f"the run exited ({outcome.returncode}) before '{at.about}': {outcome.stderr[-3000:]}"
    assert_left_at(name, outcome, sc.version)

    published_now = name == "published"
    assert_store_serves(sc.store, sc.after if published_now else sc.before, tmp_path, capsys, "after-kill")
    after_kill = f"v{sc.version} published and verified" if published_now else (
        f"v{max(sc.before)} verified" if sc.before else "no version: readers say so (exit 2)")

    code, out, err = cli(capsys, *sc.argv)
    if kind == "compress" and published_now:
        # the work is done: compress refuses a store that holds a version, and says so
        assert code == 2 and "already holds a published store" in err, (code, err)
        assert not (sc.store / wdir(sc.version)).exists(), "the refusing compress left the scratch behind"
        rerun = "refused cleanly: the store is complete, no scratch left"
        assert_store_serves(sc.store, sc.after, tmp_path, capsys, "after-rerun")
    elif published_now:
        assert code == 0, f"a refresh after one killed once it had published: {err}"
        assert published_versions(str(sc.store)) == [1, 2], "nothing changed since version 2: no new version"
        assert_store_serves(sc.store, sc.after, tmp_path, capsys, "after-rerun")
        assert not (sc.store / wdir(sc.version)).exists(), "the refresh left the scratch behind"
        rerun = "exit 0, nothing changed: no version 3, no scratch left"
    else:
        assert code == 0, f"re-run after a kill at '{at.about}': {err}"
        assert_store_serves(sc.store, sc.after, tmp_path, capsys, "after-rerun")
        assert not (sc.store / wdir(sc.version)).exists(), "the re-run left its scratch behind"
        rerun = f"exit 0, v{sc.version} round-trips and verifies, no scratch left"
    assert not (sc.store / "_lock").exists(), "the re-run left the store locked"
    with capsys.disabled():
        report(kind, name, outcome, sc.version, after_kill, rerun)
        if published_now:
            t = outcome.timeline
            print(f"CRASH | {kind} | timeline | lock at {t.get('_lock', float('nan')):.2f} s, first file of "
                  f"v{sc.version} at {outcome.first_write_at:.2f} s, manifest at {t[vdir(sc.version) + '/manifest.json']:.2f} s")


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_random_moments_then_a_rerun_completes(kind, corpus, request, tmp_path, capsys):
    """Kills at seeded random moments of the part of a run that writes the version (from its first
    file in the version's folder or scratch), one in each equal slice of that part as the
    "published" run measured it, stretched by RANDOM_STRETCH to reach past the manifest; each run
    starts over the previous one's leftovers. The start-up before it is the "start" point's."""
    sc = scenario(kind, request, corpus, tmp_path)
    active = sc.published.active_seconds * RANDOM_STRETCH
    rng = random.Random(RANDOM_SEED)
    delays = [(i + rng.random()) * active / RANDOM_KILLS for i in range(RANDOM_KILLS)]
    lines = []
    finished = False
    for i, delay in enumerate(delays):
        at = Point(f"random-{i}", f"{delay:.3f} s after the run's first file of its version", after_first_write(delay))
        outcome = run_until(command(*sc.argv), sc.store, at, sc.version, tmp_path / "logs")
        assert outcome.killed or outcome.returncode == 0, outcome.stderr[-3000:]
        finished = (sc.store / vdir(sc.version) / "manifest.json").exists()
        assert_store_serves(sc.store, sc.after if finished else sc.before, tmp_path, capsys, at.name)
        lines.append((f"random +{delay:.2f} s of {active:.2f}", outcome))
        if finished:
            break
    if not finished:
        code, _, err = cli(capsys, *sc.argv)
        assert code == 0, err
    assert_store_serves(sc.store, sc.after, tmp_path, capsys, "after-rerun")
    assert not (sc.store / wdir(sc.version)).exists() or finished
    assert not (sc.store / "_lock").exists() or finished
    with capsys.disabled():
        for label, outcome in lines:
            report(kind, label, outcome, sc.version, "last version verified", "")
        print(f"CRASH | {kind} | random chain | {'published by its last run' if finished else 're-run: exit 0'} | "
              f"v{sc.version} round-trips and verifies")


@pytest.mark.parametrize("kind, sig", [("compress", signal.SIGTERM), ("refresh", signal.SIGTERM), ("compress", signal.SIGINT)])
def test_a_run_stopped_by_sigterm_or_ctrl_c_leaves_nothing_behind(kind, sig, corpus, request, tmp_path):
    """Issue 14, item 14: stopped while its scratch holds spilled vectors, a run removes its scratch,
    its unpublished version and its lock before it exits, rather than leaving them to the next run."""
    sc = scenario(kind, request, corpus, tmp_path)
    before = {p for p in scan(sc.store)}
    with Run(command(*sc.argv), sc.store, sc.version, tmp_path / "logs", "stopped") as run:
        assert run.wait_for(point("scratch", sc)), run.outcome().stderr[-3000:]
        outcome = run.stop(sig)
    name = signal.Signals(sig).name
    assert outcome.returncode == (143 if sig == signal.SIGTERM else 130), outcome.stderr[-3000:]
    assert f"hyperscene {kind}: interrupted ({name})" in outcome.stderr and "Traceback" not in outcome.stderr
    assert {p for p in scan(sc.store)} == before, sorted(set(scan(sc.store)) - before)
    assert published_versions(str(sc.store)) == sorted(sc.before)


def test_refresh_lock_refuses_a_second_refresh_while_one_runs(corpus, request, tmp_path):
    """The first refresh is stopped (SIGSTOP) once it has spilled vectors, so it surely holds the lock;
    a second one must fail cleanly; the first, resumed, publishes version 2."""
    sc = scenario("refresh", request, corpus, tmp_path)
    with Run(command(*sc.argv), sc.store, sc.version, tmp_path / "logs", "first") as first:
        assert first.wait_for(point("scratch", sc)), first.outcome().stderr[-3000:]
        first.pause()
        assert (sc.store / "_lock").exists()
        try:
            second = subprocess.run(command(*sc.argv), capture_output=True, text=True, timeout=300, cwd=tmp_path)
        finally:
            first.resume()
        assert second.returncode == 2 and "another refresh is writing this store" in second.stderr, (
            second.returncode, second.stderr)
        assert "Traceback" not in second.stderr
        assert published_versions(str(sc.store)) == [1]
        outcome = first.wait()
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert published_versions(str(sc.store)) == [1, 2]


def test_refresh_after_a_sigkilled_refresh_is_not_locked_out(corpus, request, tmp_path, capsys):
    """A refresh killed while it holds the lock must not leave the store locked for good."""
    sc = scenario("refresh", request, corpus, tmp_path)
    with Run(command(*sc.argv), sc.store, sc.version, tmp_path / "logs", "killed") as run:
        assert run.wait_for(point("tables", sc)), run.outcome().stderr[-3000:]
        outcome = run.kill()
    assert outcome.killed and "_lock" in outcome.left, sorted(outcome.left)  # a stale lock, to take over
    code, _, err = cli(capsys, *sc.argv)
    assert code == 0, f"refresh after a SIGKILLed refresh: {err} (left: {sorted(outcome.new)})"
    assert_store_serves(sc.store, sc.after, tmp_path, capsys, "after-rerun")
    assert not (sc.store / "_lock").exists()


def test_scratch_left_by_a_run_killed_after_publishing_is_cleared_by_the_next_write(corpus, compress_published, tmp_path, capsys):
    """A compress killed between its manifest and its clean-up leaves its scratch (the spilled vectors
    of the whole corpus) and its lock. Compress refuses the store from then on, so the next writer
    is a refresh: it takes over the stale lock, and since the lock means no other writer runs, no
    scratch folder can be in use and none should outlive it."""
    store = tmp_path / "store"
    shutil.copytree(compress_published.store, store)
    if not (store / wdir(1)).exists():  # this time the kill came after compress had removed it: stand in for it
        (store / wdir(1)).mkdir(parents=True)
        (store / wdir(1) / "vectors-000000.npy").write_bytes(b"left by a killed run")
    code, _, err = cli(capsys, *refresh_args(corpus, store))
    assert code == 0, err
    assert_store_serves(store, {1: corpus.v1, 2: corpus.v2}, tmp_path, capsys, "after-refresh")
    assert not (store / "_lock").exists()
    assert not (store / "_work").exists(), f"scratch left: {sorted(p for p in snapshot(store) if p.startswith('_work/'))}"
