"""Small helpers shared by the subcommands: Beam flag checks, logging set-up, store text made safe to show."""

from __future__ import annotations

import logging
import os
import signal
import sys
import unicodedata

from hyperscene.transforms.errors import Errors, InvalidOption


def visible(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (``\\uNNNN`` above 0xFF): store
    text shown on a terminal or a page can then never set a title, move the cursor or clear the
    screen (ESC, BEL and the C1 controls are such characters)."""
    if text.isprintable():
        return text
    return "".join((f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}") if unicodedata.category(c) == "Cc" else c
                   for c in text)


# Lines Beam and Hugging Face print on every start that tell a user nothing they can act on.
_NOISE = ("apitools not found", "Discarding unparseable args", "Loading weights")


class _DropNoise(logging.Filter):
    def __init__(self, verbose: bool = False):
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith("apache_beam.runners") and not self._verbose:
            return False  # a failing stage's traceback: the exception reaches the command, which says it in one line
        return not any(n in record.getMessage() for n in _NOISE)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so callers that swap it (tests, notebooks) keep logs."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def setup_logging(verbose: bool = False) -> None:
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DropNoise(verbose))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("hyperscene").setLevel(logging.INFO)
    for noisy in ("apache_beam", "sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub", "distributed"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


# Local worker processes: each loads the model and holds its own buffers, so far more than the cores
# only costs memory; a mistyped count (3000000000) would otherwise try to start that many.
MAX_WORKERS = 256


def check_workers(workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidOption(Errors.E201.format(most=MAX_WORKERS, workers=workers, cores=os.cpu_count()))


def check_beam_args(args: list[str]) -> None:
    """Flags we did not define must be Beam pipeline options; anything else is a typo to report."""
    if not args:
        return
    from apache_beam.options.pipeline_options import PipelineOptions

    for previous, arg in zip([None, *args], args):
        takes_value = previous is not None and previous.startswith("--") and "=" not in previous
        if not arg.startswith("-") and not takes_value:
            raise InvalidOption(Errors.E202.format(arg=arg))

    from hyperscene.pipelines.runners import register_options

    register_options()
    options = PipelineOptions(args)
    logging.getLogger("apache_beam.options.pipeline_options").disabled = True
    try:
        unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    finally:
        logging.getLogger("apache_beam.options.pipeline_options").disabled = False
    if unknown:
        raise InvalidOption(Errors.E203.format(option=sorted(unknown)[0]))


def human(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def create_runner(options):
    """The runner named by --runner (default DirectRunner), or a one-line error for an unknown one."""
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import create_runner as beam_create_runner

    from hyperscene.pipelines.runners import runner_path

    name = options.view_as(StandardOptions).runner or "DirectRunner"
    try:
        return beam_create_runner(runner_path(name))
    except (ValueError, ImportError) as e:
        raise InvalidOption(Errors.E204.format(runner=name, error=e)) from None


# Seconds a stopped run has to clean up before it exits regardless (the next run clears what is left).
CLEANUP_SECONDS = 60.0
# The signal that stopped this process, for the command's last line (Beam rewrites the messages of
# exceptions that cross a stage, so it cannot travel in the exception).
stopped_by: str | None = None


def raise_on_termination() -> None:
    """Make SIGTERM (``kill``, a scheduler stopping the job) raise KeyboardInterrupt in the main
    thread, as Ctrl-C's SIGINT does, so that a job cleans up after itself (:func:`writing_version`),
    and note which signal it was: a stage may turn the exception into another."""
    import threading

    global stopped_by
    stopped_by = None
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return

    def stop(signum, frame):
        global stopped_by
        first = stopped_by is None
        stopped_by = signal.Signals(signum).name
        if first:
            # The cleanup gets a bounded time: a stage may swallow the exception (Beam's worker start-up
            # does), and a process that ignores SIGTERM would have to be SIGKILLed, leaving everything.
            timer = threading.Timer(CLEANUP_SECONDS, os._exit, args=(143 if signum == signal.SIGTERM else 130,))
            timer.daemon = True
            timer.start()
        else:  # a second signal: stop now
            os._exit(143 if signum == signal.SIGTERM else 130)
        raise KeyboardInterrupt(stopped_by)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
