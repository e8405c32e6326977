"""Small helpers shared by the subcommands: Beam flag checks and logging set-up."""

from __future__ import annotations

import logging
import sys

from hyperscene.transforms.errors import InvalidOption

# Lines Beam and Hugging Face print on every start that tell a user nothing they can act on.
_NOISE = ("apitools not found", "Discarding unparseable args", "Loading weights")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in _NOISE)


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DropNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("hyperscene").setLevel(logging.INFO)
    for noisy in ("apache_beam", "sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


def check_beam_args(args: list[str]) -> None:
    """Flags we did not define must be Beam pipeline options; anything else is a typo to report."""
    if not args:
        return
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(args)
    logging.getLogger("apache_beam.options.pipeline_options").disabled = True
    try:
        unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    finally:
        logging.getLogger("apache_beam.options.pipeline_options").disabled = False
    if unknown:
        raise InvalidOption(f"unknown option --{sorted(unknown)[0]} (not a hyperscene or Apache Beam option)")


def human(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"
