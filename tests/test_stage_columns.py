"""The unit stages' record: buckets leaving each stage hold exactly the columns schemas/unit_bucket.py
declares for it, through real stages (exact dedup, token counts, the bundled model, hyperwords)."""

import logging

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from hyperscene.schemas.unit_bucket import OCCURRENCE_COLUMNS_AFTER, UNIT_COLUMNS_AFTER
from hyperscene.transforms.codebook import AssignHyperwords, TrainCodebook
from hyperscene.transforms.dedup import ExactDedup
from hyperscene.transforms.embed import Embed, SentenceTransformerModelHandler
from hyperscene.transforms.tokens import CountTokens


def _occurrences(doc_id, texts):
    return pa.table({"doc_id": [doc_id] * len(texts), "position": list(range(len(texts))), "text": texts,
                     "separator": [" "] * len(texts)})


def test_buckets_leave_each_stage_with_the_declared_columns(model_folder, caplog):
    caplog.set_level(logging.INFO, logger="hyperscene")
    assert UNIT_COLUMNS_AFTER.keys() == OCCURRENCE_COLUMNS_AFTER.keys()
    docs = [_occurrences("a", ["The cat sat.", "It purred.", "The cat sat."]), _occurrences("b", ["Rain fell.", "It purred."])]
    handler = SentenceTransformerModelHandler(model_folder, batch_size=8)
    with TestPipeline() as p:
        deduped = p | beam.Create(docs) | ExactDedup(n_buckets=2)
        counted = deduped | CountTokens(model_folder)
        embedded = counted | Embed(handler)
        centroids = embedded | TrainCodebook(2, seed=0, dimension=384)
        assigned = embedded | AssignHyperwords(centroids)
        for stage, buckets in (("dedup", deduped), ("count tokens", counted), ("assign", assigned)):
            problems = buckets | f"Check {stage}" >> beam.Map(lambda b, s=stage: b.missing_columns(s))
            assert_that(problems, equal_to([[], []]), label=f"columns after {stage}")
    # the codebook's k-means is one silent task: it says what it is doing when it starts
    assert "train codebook: k-means of 3 sampled units into 2 hyperwords" in caplog.text
