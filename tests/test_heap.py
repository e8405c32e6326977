import resource
import sys

import numpy as np
import pytest

from hyperscene.transforms import heap


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc's malloc only")
def test_a_model_reuses_freed_memory_only_while_it_runs():
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
