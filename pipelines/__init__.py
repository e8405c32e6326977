"""Jobs and the ``hyperscene`` command line: they wire stages from ``hyperscene.transforms``."""

__version__ = "0.1.0"
