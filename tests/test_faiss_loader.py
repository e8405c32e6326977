import os
import subprocess
import sys

from hyperscene.transforms.cpu import cpu_flags
from hyperscene.transforms.faiss_loader import coretype_for

SKYLAKEX_FLAGS = {"sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}


def test_the_kernel_family_follows_the_cpu_flags():
    assert coretype_for(SKYLAKEX_FLAGS) == "SkylakeX"
    assert coretype_for(SKYLAKEX_FLAGS - {"avx512bw"}) == "Haswell"  # AVX-512 F alone (Knights Landing) is not enough
    assert coretype_for({"sse4_2", "avx", "avx2", "fma"}) == "Haswell"
    assert coretype_for({"sse4_2", "avx"}) is None
    assert coretype_for(set()) is None  # not Linux, or not x86: OpenBLAS decides


def test_cpu_flags_are_read_from_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "fma"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_flags(str(tmp_path / "arm")) == set()


def _variable_after_loading_faiss(**env) -> str:
    code = ("import os; from hyperscene.transforms.faiss_loader import load_faiss; load_faiss(); "
            "print(repr(os.environ.get('OPENBLAS_CORETYPE')))")
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    return subprocess.run([sys.executable, "-c", code], env=base | env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_loading_faiss_chooses_the_kernels_unless_the_user_did():
    assert _variable_after_loading_faiss() == repr(coretype_for(cpu_flags()))
    assert _variable_after_loading_faiss(OPENBLAS_CORETYPE="") == "''"  # empty: OpenBLAS detects
    assert _variable_after_loading_faiss(OPENBLAS_CORETYPE="Haswell") == "'Haswell'"
