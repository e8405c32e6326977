"""The Dask runner's client is closed whatever becomes of the run."""

import apache_beam as beam
import pytest

from hyperscene.pipelines import job, runners

DASK = ["--runner", "DaskRunner", "--dask_local_workers", "1"]


def _refuse(x):
    raise ValueError(f"record {x} refused on purpose")


@pytest.fixture
def opened(monkeypatch):
    """The clients runs open, each as it is when the run has ended."""
    ddist = pytest.importorskip("dask.distributed")
    clients = []
    real_init = ddist.Client.__init__

    def init(self, *args, **kwargs):
        clients.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ddist.Client, "__init__", init)
    return clients


def test_a_dask_run_that_fails_on_a_worker_closes_its_client(tmp_path, opened):
    def build(p, path, scratch):
        p | beam.Create([1, 2]) | beam.Map(_refuse)

    with pytest.raises(Exception, match="refused on purpose"):
        job.write_version(str(tmp_path / "store"), 1, build, DASK, None)
    assert len(opened) == 1 and opened[0].status == "closed"


def test_a_dask_run_that_fails_before_it_starts_closes_its_client(tmp_path, opened, monkeypatch):
    def refuse_to_submit(self, *args):
        raise RuntimeError("not submitted, on purpose")

    monkeypatch.setattr(runners._dask_runner_class(), "_submit", refuse_to_submit)

    def build(p, path, scratch):
        p | beam.Create([1, 2]) | beam.Map(str)

    with pytest.raises(RuntimeError, match="not submitted, on purpose"):
        job.write_version(str(tmp_path / "store"), 1, build, DASK, None)
    assert len(opened) == 1 and opened[0].status == "closed"
