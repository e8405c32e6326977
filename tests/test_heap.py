import json
import os
import subprocess
import sys
import textwrap

import pytest

from hyperscene.transforms import heap

# Run in a fresh process, as compress starts: in a long test session the heap holds free chunks
# that earlier tests left between live ones, and glibc serves a large request from such a chunk
# before it maps fresh memory, whatever the mmap threshold (in the full suite this test counted
# no page faults at all).
PAGE_FAULTS = textwrap.dedent("""
    import json, resource
    import numpy as np
    from hyperscene.transforms import heap

    # numpy asks the kernel for huge pages for large arrays, which it grants or not by what memory
    # is free; an 8 MiB array then faults 4 times instead of 2,048
    (np._core if hasattr(np, "_core") else np.core).multiarray._set_madvise_hugepage(False)
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
    print(json.dumps([fixed, reusing, still, again]))
""")


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc's malloc only")
@pytest.mark.skipif(_huge_pages_always(), reason="the kernel backs every large mapping with huge pages")
def test_a_model_reuses_freed_memory_only_while_it_runs():
    """compress fixes glibc's mmap threshold so that freed buckets leave the process; a model's
    forward pass frees and allocates buffers of the same few MB again and again, which must then
    come back without faulting in fresh pages; after it, freed buffers leave the process again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc reads these at start
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS], capture_output=True, text=True, check=True, env=env).stdout
    fixed, reusing, still, again = json.loads(out.splitlines()[-1])
    assert reusing < fixed / 10 and still < fixed / 10 and reusing < again / 10, (fixed, reusing, still, again)
