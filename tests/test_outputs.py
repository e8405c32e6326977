"""SplitOutputs: a multi-output step built from single-output ParDos, so that every runner splits it alike."""

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from hyperscene.transforms.outputs import SplitOutputs


class _EvensAndOdds(beam.DoFn):
    """Evens to the main output, odds tagged, each plus a side input; a count per bundle from finish_bundle."""

    def start_bundle(self):
        self.seen = 0

    def process(self, x, offset):
        self.seen += 1
        yield x + offset if x % 2 == 0 else beam.pvalue.TaggedOutput("odd", x + offset)

    def finish_bundle(self):
        yield beam.pvalue.TaggedOutput("seen", WindowedValue(self.seen, 0, [GlobalWindow()]))


def test_each_tag_gets_its_own_outputs_side_inputs_and_finish_bundle_included():
    with TestPipeline() as p:
        offset = p | "Offset" >> beam.Create([100])
        out = p | beam.Create(range(6)) | SplitOutputs(_EvensAndOdds(), beam.pvalue.AsSingleton(offset),
                                                         tags=("odd", "seen"), main="even")
        assert_that(out.even, equal_to([100, 102, 104]), label="even")
        assert_that(out["odd"], equal_to([101, 103, 105]), label="odd")
        assert_that(out.seen | beam.CombineGlobally(sum), equal_to([6]), label="seen")


def test_a_function_is_called_as_flatmap_calls_it():
    def split(x):
        yield x if x > 1 else beam.pvalue.TaggedOutput("small", x)

    with TestPipeline() as p:
        out = p | beam.Create([0, 1, 2, 3]) | SplitOutputs(split, tags=("small",), main="big")
        assert_that(out.big, equal_to([2, 3]), label="big")
        assert_that(out.small, equal_to([0, 1]), label="small")
