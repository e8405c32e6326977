"""Progress lines and per-stage timings for long stages, so a multi-hour run is never silent.

Timings go to Beam metrics (namespace ``hyperscene``: ``<stage>.us``, ``<stage>.items`` and the
``<stage>.peak_rss_mb`` gauge), which the launcher reads after the run. Each process also keeps its
own totals, which the launcher collects from the workers of a runner without metrics (Dask: see
pipelines/runners.py). Time is measured around a stage's own work only, never around ``yield``,
which would bill the stages fused after it.
"""

import logging
import resource
import time
from contextlib import contextmanager

logger = logging.getLogger("hyperscene")
NAMESPACE = "hyperscene"
# This process's totals per stage since they were last taken: {stage: [us, items, peak_rss_mb]}.
_process_totals: dict[str, list] = {}


class Timed:
    """What a :func:`stage_timer` block yields: set ``items`` inside it when they are known only there."""

    def __init__(self, items: int):
        self.items = items


@contextmanager
def stage_timer(stage: str, items: int):
    from apache_beam.metrics import Metrics

    start = time.perf_counter()
    timed = Timed(items)
    try:
        yield timed
    finally:
        items = timed.items
        # Microseconds: a short document's piece of a stage takes well under a millisecond, and
        # thousands of them counted in whole milliseconds added up to nothing.
        us = int((time.perf_counter() - start) * 1_000_000)
        peak = _peak_rss_mb()
        Metrics.counter(NAMESPACE, f"{stage}.us").inc(us)
        Metrics.counter(NAMESPACE, f"{stage}.items").inc(items)
        Metrics.gauge(NAMESPACE, f"{stage}.peak_rss_mb").set(peak)
        total = _process_totals.setdefault(stage, [0, 0, 0])
        total[0] += us
        total[1] += items
        total[2] = max(total[2], peak)


_rss = [0.0, 0]  # when this process's peak was last read, and its value (MiB)


def _peak_rss_mb() -> int:
    """This process's peak resident memory, read at most every 0.2 s: a stage timed per short
    document would otherwise spend more in getrusage than in its work."""
    now = time.monotonic()
    if now - _rss[0] >= 0.2:
        _rss[:] = [now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024]
    return _rss[1]


def take_process_totals() -> dict[str, list]:
    """This process's stage totals since the last call ({stage: [us, items, peak_rss_mb]}), and a fresh start."""
    taken = dict(_process_totals)
    _process_totals.clear()
    return taken


class Progress:
    """Counts items and logs a line at most every ``interval`` seconds (and never per element)."""

    def __init__(self, stage: str, unit: str, interval: float = 15.0):
        self.stage = stage
        self.unit = unit
        self.interval = interval
        self.count = 0
        self._start = time.monotonic()
        self._last = self._start

    def timed(self, n: int):
        """Time a piece of this stage's work on ``n`` items; counts them too."""
        self.add(n)
        return stage_timer(self.stage, n)

    def add(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = self.count / max(now - self._start, 1e-9)
            logger.info("%s: %s %s (%.0f/s)", self.stage, f"{self.count:,}", self.unit, rate)


def report_of_totals(per_process: list[dict[str, list]]) -> dict:
    """The :func:`stage_report` of totals taken from each worker process (:func:`take_process_totals`):
    seconds and items summed, peak memory the largest of one process."""
    stages: dict[str, dict] = {}
    for totals in per_process:
        for stage, (us, items, peak) in totals.items():
            entry = stages.setdefault(stage, {"seconds": 0.0, "items": 0, "peak_rss_mb": 0})
            entry["seconds"] += us / 1_000_000
            entry["items"] += items
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], peak)
    return _rounded(stages)


def stage_report(result) -> dict:
    """Per-stage seconds, items, items/s and peak memory from a finished pipeline's metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    stages: dict[str, dict] = {}
    for kind in ("counters", "gauges"):
        for m in metrics[kind]:
            stage, _, what = m.key.metric.name.rpartition(".")
            value = m.committed if m.committed is not None else m.attempted
            value = getattr(value, "value", value)
            entry = stages.setdefault(stage, {"seconds": 0.0, "items": 0, "peak_rss_mb": 0})
            if what == "us":
                entry["seconds"] += value / 1_000_000
            elif what == "items":
                entry["items"] += value
            else:
                entry["peak_rss_mb"] = max(entry["peak_rss_mb"], value)
    return _rounded(stages)


def _rounded(stages: dict) -> dict:
    for entry in stages.values():
        entry["seconds"] = round(entry["seconds"], 2)
        entry["items_per_s"] = round(entry["items"] / entry["seconds"]) if entry["seconds"] else None
    return stages
