"""FAISS, loaded so that its matrix products use the vector instructions this CPU has.

The faiss-cpu wheels bundle their own OpenBLAS (0.3.15 in faiss-cpu 1.15), which does not know CPUs
newer than itself (such as the Xeon with AVX-512 the README's figures come from): it falls back to
its Prescott kernels (SSE3; the fallback of OpenMathLib/OpenBLAS#4267, mended in 0.3.25), and every
k-means iteration, assignment and near-duplicate search then runs three to five times slower than it
could (`python benchmarks/faiss_blas.py`). OpenBLAS takes its kernel family from
``OPENBLAS_CORETYPE`` when the library loads, so before FAISS first loads in a process (the
launcher, a Beam or Dask worker), when the variable is not set, it is set from the CPU's own flags:
SkylakeX where the AVX-512 parts those kernels use are there, Haswell where AVX2 and FMA are,
nothing otherwise. A CPU that OpenBLAS knows gets those families from its own detection too. Set the
variable yourself to choose otherwise (an empty value leaves the choice to OpenBLAS).
"""

from __future__ import annotations

import os
import sys

from hyperscene.transforms.cpu import cpu_flags

CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"
# OpenBLAS's SkylakeX kernels use AVX-512 F, BW, DQ and VL; its Haswell ones AVX2 and FMA.
CORETYPES = (("SkylakeX", {"avx512f", "avx512bw", "avx512dq", "avx512vl"}), ("Haswell", {"avx2", "fma"}))


def coretype_for(flags: set[str]) -> str | None:
    """The OpenBLAS kernel family for a CPU with these flags (as /proc/cpuinfo names them)."""
    for coretype, needed in CORETYPES:
        if needed <= flags:
            return coretype
    return None


def load_faiss():
    """The ``faiss`` module, with ``OPENBLAS_CORETYPE`` chosen first if FAISS is not loaded yet."""
    if "faiss" not in sys.modules and CORETYPE_VARIABLE not in os.environ:
        coretype = coretype_for(cpu_flags())
        if coretype is not None:
            os.environ[CORETYPE_VARIABLE] = coretype
    import faiss

    return faiss
