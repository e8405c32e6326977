"""The ``hyperscene`` command: one entry point, a subcommand per job.

Subcommand modules are imported only when chosen, so ``hyperscene --help`` loads no Beam, torch,
spaCy or FAISS.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys

from hyperscene.pipelines import __version__

COMMANDS = {
    "compress": ("hyperscene.pipelines.compress", "compress a corpus into a Parquet store"),
    "refresh": ("hyperscene.pipelines.refresh", "add new and changed documents to a store as a new version"),
    "retrain": ("hyperscene.pipelines.retrain", "train a store's codebooks again as a new version, with an id-stability report"),
    "decompress": ("hyperscene.pipelines.decompress", "rebuild documents from a store, byte for byte"),
    "inspect": ("hyperscene.pipelines.inspect_store", "summarise a store"),
    "verify": ("hyperscene.pipelines.verify", "check a store's files against its manifest and its documents against their sha256"),
    "log": ("hyperscene.pipelines.versions", "list a store's versions"),
    "compact": ("hyperscene.pipelines.compact", "rewrite the latest version from many files into few, as a new version"),
    "vacuum": ("hyperscene.pipelines.vacuum", "delete old versions and the files no kept version uses"),
    "export": ("hyperscene.pipelines.export", "write training files: distilled text, hyperword sequences, chat pairs"),
    "encode": ("hyperscene.pipelines.encode", "encode new text with a store's model and codebooks: hyperwords, semantic ids, matches"),
    "report": ("hyperscene.pipelines.report", "write one self-contained HTML page of plots about a store"),
    "sql": ("hyperscene.pipelines.sql", "query a store's tables by name with SQL (DuckDB)"),
}

USAGE = "usage: hyperscene [--version] [-v] COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
    f"  {name:<12}{about}" for name, (_, about) in COMMANDS.items()
) + "\n\n'hyperscene COMMAND --help' describes a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"hyperscene {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"hyperscene: error: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2

    from hyperscene.pipelines.cliutil import raise_on_termination, setup_logging

    setup_logging(verbose)
    raise_on_termination()
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        result = module.run(argv[1:])
    except BaseException as e:
        return _failed(argv[0], e, verbose)
    print_result = getattr(module, "print_result", None)  # what a command prints about its result is its own
    if print_result is not None:
        print_result(result)
    return 0


def _failed(command: str, e: BaseException, verbose: bool) -> int:
    """The exit status of a command that raised ``e``, its one line printed."""
    from hyperscene.pipelines import cliutil
    from hyperscene.transforms.errors import HypersceneError, StoreDamaged, VerificationFailed

    if isinstance(e, KeyboardInterrupt) or (cliutil.stopped_by and isinstance(e, Exception)):
        # Ctrl-C or SIGTERM (see raise_on_termination), however a stage passed it on: the job has cleaned up
        print(f"hyperscene {command}: interrupted ({cliutil.stopped_by or 'SIGINT'})", file=sys.stderr)
        return 143 if cliutil.stopped_by == "SIGTERM" else 130
    if isinstance(e, HypersceneError):
        print(f"hyperscene {command}: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, (VerificationFailed, StoreDamaged)) else 2
    if isinstance(e, BrokenPipeError):  # the reader of standard output left (| head): stop quietly, as on SIGPIPE
        _silence_stdout()
        return 141
    if not isinstance(e, Exception) or verbose:  # SystemExit (argparse), or a traceback asked for
        raise e
    # a bug or an environment problem: one line, the traceback on request
    print(f"hyperscene {command}: unexpected error: {type(e).__name__}: {e} (rerun with -v for the traceback)", file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so flushing what is left at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def entry() -> None:
    """Console-script entry. Exits without interpreter teardown: native thread pools (OpenMP, torch,
    Beam's workers) have been seen to abort the process at exit after a successful run."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
