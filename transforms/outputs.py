"""Steps with several outputs, split in a way every runner executes alike.

``beam.ParDo(fn).with_outputs(...)`` is translated per runner, and Beam's DaskRunner hands every
output of such a ParDo (main and tagged) to each consumer. :class:`SplitOutputs` is the same step
built from single-output ParDos only: the DoFn's outputs become ``(tag, value)`` pairs, and one
filter per tag selects its own. On runners that fuse (the DirectRunner, Flink, Dataflow) the pairs
never leave the process, so the split costs one cheap call per output and tag.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput


class Outputs(dict):
    """The PCollections of a :class:`SplitOutputs`, by tag; also as attributes (``result.documents``),
    as ``with_outputs`` gives them."""

    def __getattr__(self, tag):
        try:
            return self[tag]
        except KeyError:
            raise AttributeError(tag) from None


class _Tagged(beam.DoFn):
    """``fn``'s outputs as (tag, value) pairs; its lifecycle passed through."""

    def __init__(self, fn: beam.DoFn, main: str):
        self._fn = fn
        self._main = main

    def setup(self):
        self._fn.setup()

    def start_bundle(self):
        self._fn.start_bundle()

    def process(self, element, *args, **kwargs):
        for out in self._fn.process(element, *args, **kwargs) or ():
            if isinstance(out, TaggedOutput):
                yield out.tag, out.value
            else:
                yield self._main, out

    def finish_bundle(self):
        from apache_beam.utils.windowed_value import WindowedValue

        for out in self._fn.finish_bundle() or ():
            tag, value = (out.tag, out.value) if isinstance(out, TaggedOutput) else (self._main, out)
            yield WindowedValue((tag, value.value), value.timestamp, value.windows)

    def teardown(self):
        self._fn.teardown()


class _Calls(beam.DoFn):
    """A function used as FlatMap uses it, as a DoFn."""

    def __init__(self, fn):
        self._fn = fn

    def process(self, element, *args, **kwargs):
        return self._fn(element, *args, **kwargs)


def _select(pair, tag):
    if pair[0] == tag:
        yield pair[1]


class SplitOutputs(beam.PTransform):
    """``beam.ParDo(fn, *args, **kwargs).with_outputs(*tags, main=main)``, on every runner alike.
    ``fn`` is a DoFn, or a function called as ``beam.FlatMap`` calls it. Side inputs pass as they
    would to ParDo."""

    def __init__(self, fn, *args, tags: tuple[str, ...], main: str, **kwargs):
        super().__init__()
        self._fn = fn if isinstance(fn, beam.DoFn) else _Calls(fn)
        self._tags = (main, *tags)
        self._main = main
        self._args = args
        self._kwargs = kwargs

    def expand(self, pcoll):
        pairs = pcoll | "Tag" >> beam.ParDo(_Tagged(self._fn, self._main), *self._args, **self._kwargs)
        return Outputs({tag: pairs | f"Only {tag}" >> beam.FlatMap(_select, tag) for tag in self._tags})
