"""What --setup_file stages to remote workers: built by Beam's own stager, installed in a clean venv."""

import subprocess
import sysconfig
import venv
from pathlib import Path

from conftest import REPO


def test_staged_package_installs_and_imports_in_a_clean_venv(tmp_path):
    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(str(REPO / "setup.py"), str(tmp_path))

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # A worker image brings the dependencies (and pip); here this test's own environment stands in.
    (site / "worker_image_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", sdist], check=True)

    installed = sorted(p.name for p in site.iterdir())
    assert "hyperscene" in installed
    assert not {"pipelines", "transforms", "schemas", "tests"} & set(installed)
    code = ("import hyperscene.pipelines.compress, hyperscene.pipelines.decompress, hyperscene.pipelines.inspect_store, "
            "hyperscene.schemas, hyperscene.transforms.near_dup; print(hyperscene.pipelines.compress.__file__)")
    where = subprocess.check_output([python, "-c", code], text=True, cwd=tmp_path).strip()
    assert where.startswith(str(site)), where  # the staged copy, not the source tree
    assert "compress" in subprocess.check_output([env / "bin" / "hyperscene", "--help"], text=True)
