"""What differs from one Beam runner to another, kept out of the jobs: runner names Beam does not
know, the local worker flags of ``--workers``, the Dask cluster a run starts, and stage timings
where the runner has no metrics.

Beam's DaskRunner ships with Beam but is not among the names ``--runner`` resolves, has no
metrics, and needs a dask.distributed scheduler: a run names one with ``--dask_client_address``
(or ``--dask_scheduler_file``), or gets a LocalCluster of ``--workers`` processes, one thread
each, started for the run and closed after it. ``--runner DaskRunner`` names :class:`DaskRunner`
below: Beam's, with each step computed once (see there).
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager

from apache_beam.options.pipeline_options import PipelineOptions

logger = logging.getLogger("hyperscene")

DASK_RUNNER = "hyperscene.pipelines.runners.DaskRunner"
_SHORT_NAMES = {"daskrunner": DASK_RUNNER, "dask": DASK_RUNNER, "apache_beam.runners.dask.dask_runner.daskrunner": DASK_RUNNER}
_DASK_SCHEDULER_FLAGS = ("--dask_client_address", "--dask_scheduler_file")
PARTITIONS_PER_WORKER = 2


class LocalDaskOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--dask_local_workers", type=int, default=None,
                            help="worker processes of the LocalCluster a Dask run starts (hyperscene sets it from --workers)")


def register_options() -> None:
    """Make Dask's options known to PipelineOptions: they are defined in its runner module, which
    imports dask (without dask installed they stay unknown, and naming one is an error)."""
    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    except ImportError:
        pass


def runner_path(name: str) -> str:
    """The import path of a runner Beam knows by a short name only through us (DaskRunner)."""
    return _SHORT_NAMES.get(name.lower(), name)


def is_dask(beam_args) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    name = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner or "DirectRunner"
    return runner_path(name) == DASK_RUNNER


def local_worker_flags(workers: int, beam_args: list[str]) -> list[str]:
    """``--workers N`` as the runner's own flags, unless the user set those flags already: the
    DirectRunner's multi_processing mode, or for Dask a LocalCluster of N processes unless a
    scheduler is named."""
    if is_dask(beam_args):
        # Beam's DaskRunner splits each Create into partitions, and every bag downstream keeps that
        # count (grouping included): with one partition, one worker would do all the work.
        flags = [] if any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in beam_args) else [
            "--dask_npartitions", str(PARTITIONS_PER_WORKER * workers)]
        if not any(a.startswith(_DASK_SCHEDULER_FLAGS) for a in beam_args):
            flags += ["--dask_local_workers", str(workers)]
        return flags
    if workers <= 1 or any(a.startswith(("--direct_num_workers", "--direct_running_mode")) for a in beam_args):
        return []
    return ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]


@contextmanager
def cluster_for(options):
    """For a Dask run with ``--dask_local_workers N``: a LocalCluster of N worker processes with one
    thread each (our stages are CPU-bound Python: threads would share one GIL), whose address the
    run's options then name; closed when the block ends. Anything else: nothing to do."""
    n = options.get_all_options().get("dask_local_workers")
    if not n:
        yield
        return
    from dask.distributed import LocalCluster

    if not logging.getLogger().isEnabledFor(logging.INFO):  # not -v; dask sets its loggers' levels when imported
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core", "distributed.worker",
                     "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)

    import dask

    # Dask starts workers with OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's); the launcher's own thread
    # count is kept instead: torch's bfloat16 kernels round differently with another thread count
    # (12 of the sample's 2,064 MiniLM vectors differ in their last bits), and the store must not
    # depend on the runner.
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items() if not k.endswith("_NUM_THREADS")}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        from apache_beam.runners.dask.dask_runner import DaskOptions

        options.view_as(DaskOptions).address = cluster.scheduler_address
        logger.info("started a Dask LocalCluster of %d worker processes at %s", n, cluster.scheduler_address)
        yield


def finish(result) -> dict | None:
    """After a run has finished: stage timings from its workers where the runner has no metrics
    (None where it has)."""
    client = getattr(result, "client", None)
    if client is None:
        return None
    from hyperscene.transforms.progress import report_of_totals, take_process_totals

    return report_of_totals(list(client.run(take_process_totals).values()))


@contextmanager
def closing_client(result):
    """The client a Dask run opened, closed when the block ends, whether the run succeeded or not
    (left open, it holds its connection to a scheduler that outlives the run)."""
    try:
        yield result
    finally:
        close_client(getattr(result, "client", None))


def close_client(client) -> None:
    """Close a Dask client; a failure to close is logged, never raised over the run's own error."""
    if client is None:
        return
    try:
        client.close()
    except Exception as e:  # the scheduler may be what failed
        logger.warning("could not close the Dask client: %s", e)


def _log_progress() -> None:
    # Forwarded to the launcher, which prints them; not printed on the worker as well.
    progress = logging.getLogger("hyperscene")
    progress.setLevel(logging.INFO)
    progress.propagate = False


@functools.cache
def _dask_runner_class():
    try:
        import dask.distributed  # noqa: F401
        from apache_beam.runners.dask import dask_runner
    except ImportError as e:
        raise ImportError(f"{e}: the Dask runner needs dask.distributed (pip install \"dask[distributed]\")") from None

    class DaskRunner(dask_runner.DaskRunner):
        """Beam's DaskRunner, computing each transform once.

        Beam's builds one lazy bag per transform and computes the last; a side input becomes a
        nested computation of its bag, started by every task that reads it, and that bag and all
        upstream of it are not kept, so each such task computes them again (on the sample corpus,
        every bucket was embedded 30 to 80 times, and files written twice at once came out
        different). Here each transform's bag is persisted as the graph is built: the cluster
        computes it once, and downstream transforms and side inputs read its results by key. The
        translation is Beam's.
        """

        def run_pipeline(self, pipeline, options):
            import dask.distributed as ddist
            from apache_beam.runners.dask.dask_runner import DaskOptions

            dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
            bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options)
            lazy_side_inputs = dask_options.pop("lazy_side_inputs", False)
            client = ddist.Client(**dask_options)
            try:
                return self._submit(pipeline, client, bag_kwargs, lazy_side_inputs)
            except BaseException:
                close_client(client)  # no result will carry it to be closed
                raise

        def _submit(self, pipeline, client, bag_kwargs, lazy_side_inputs):
            import dask.bag as db
            from apache_beam.runners.dask.dask_runner import DaskRunnerResult
            from apache_beam.runners.dask.overrides import dask_overrides

            # Progress lines are logged on the workers, where nothing shows them: sent to this process.
            client.run(_log_progress)
            client.forward_logging("hyperscene", level=logging.INFO)
            pipeline.replace_all(dask_overrides())
            beams_visitor = type(self.to_dask_bag_visitor(bag_kwargs, lazy_side_inputs))

            class PersistingVisitor(beams_visitor):
                def visit_transform(self, node):
                    super().visit_transform(node)
                    bag = self.bags.get(node)
                    if isinstance(bag, db.Bag):
                        self.bags[node] = client.persist(bag, optimize_graph=False)

            visitor = PersistingVisitor()
            pipeline.visit(visitor)
            result = DaskRunnerResult(client, [client.compute(list(visitor.bags.values())[-1], optimize_graph=False)])
            # A side input's bag is read by tasks that start later, each computing it by key: it is
            # held to the end (released, it would be cancelled under them). Every other result goes
            # once the steps that read it are done, as the scheduler frees what no future holds.
            result.side_inputs = [visitor.bags[si.pvalue.producer] for node in visitor.bags
                                  for si in node.side_inputs if si.pvalue.producer in visitor.bags]
            return result

    return DaskRunner


def __getattr__(name):
    # Built on first use: the class imports dask, which only Dask runs need.
    if name == "DaskRunner":
        return _dask_runner_class()
    raise AttributeError(name)
