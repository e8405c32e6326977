"""What this CPU can do, as Linux's /proc/cpuinfo says: the flags the choices of kernels and
precision read (transforms/faiss_loader.py, transforms/models.py)."""

from __future__ import annotations


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The first processor's flags, empty where the file is not there (not Linux) or has none (not x86)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()
