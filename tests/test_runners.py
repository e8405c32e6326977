"""The Dask runner's client is closed whatever becomes of the run."""

import apache_beam as beam
import pytest

from hyperscene.pipelines import job


def _refuse(x):
    raise ValueError(f"record {x} refused on purpose")


def test_a_failed_dask_run_closes_its_client(tmp_path):
    ddist = pytest.importorskip("dask.distributed")

    def build(p, path, scratch):
        p | beam.Create([1, 2]) | beam.Map(_refuse)

    with pytest.raises(Exception, match="refused on purpose"):
        job.write_version(str(tmp_path / "store"), 1, build, ["--runner", "DaskRunner", "--dask_local_workers", "1"], None)
    with pytest.raises(ValueError):
        ddist.Client.current()  # no client left open (the run's own would be the current one)
    assert not list((tmp_path / "store").glob("v*"))  # nothing of the version stays
