import resource
import sys

import numpy as np
import pytest

from hyperscene.transforms import heap


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.fixture
def small_pages():
    """Fresh pages of 4 KiB for numpy's arrays: numpy asks the kernel for huge pages for large
    arrays (madvise), which it grants or not by what memory is free, and an 8 MiB array then
    faults 4 times instead of 2,048: the counts below would depend on the machine's state."""
    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2, numpy 1

    previous = multiarray._set_madvise_hugepage(False)
    yield
    multiarray._set_madvise_hugepage(previous)


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc's malloc only")
@pytest.mark.skipif(_huge_pages_always(), reason="the kernel backs every large mapping with huge pages")
def test_a_model_reuses_freed_memory_only_while_it_runs(small_pages):
    """compress fixes glibc's mmap threshold so that freed buckets leave the process; a model's
    forward pass frees and allocates buffers of the same few MB again and again, which must then
    come back without faulting in fresh pages; after it, freed buffers leave the process again."""
    heap.return_freed_memory()  # what compress and refresh do first

    def page_faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(40):
            np.ones(1 << 20).sum()  # 8 MiB, written, freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    fixed = page_faults()
    with heap.reusing_freed_memory():
        with heap.reusing_freed_memory():  # nested, as two threads' would be
            reusing = page_faults()
        still = page_faults()  # the other is still inside
    again = page_faults()
    assert reusing < fixed / 10 and still < fixed / 10 and reusing < again / 10
