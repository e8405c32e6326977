"""Rate-limited progress lines for long stages, so a multi-hour run is never silent."""

import logging
import time

logger = logging.getLogger("hyperscene")


class Progress:
    """Counts items and logs a line at most every ``interval`` seconds (and never per element)."""

    def __init__(self, stage: str, unit: str, interval: float = 15.0):
        self.stage = stage
        self.unit = unit
        self.interval = interval
        self.count = 0
        self._start = time.monotonic()
        self._last = self._start

    def add(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = self.count / max(now - self._start, 1e-9)
            logger.info("%s: %s %s (%.0f/s)", self.stage, f"{self.count:,}", self.unit, rate)
