"""Exact dedup: a unit's id is a hash of its exact text, and each distinct text is kept once."""

from __future__ import annotations

import hashlib

import apache_beam as beam


def unit_id(text: str) -> str:
    """128-bit BLAKE2b of the UTF-8 text, hex: the same text gets the same id on any machine."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class _CountText(beam.CombineFn):
    """(text, count) per unit id; the text is the same for every occurrence of an id."""

    def create_accumulator(self):
        return (None, 0)

    def add_input(self, acc, text):
        return (text, acc[1] + 1)

    def merge_accumulators(self, accs):
        accs = list(accs)
        text = next((t for t, _ in accs if t is not None), None)
        return (text, sum(n for _, n in accs))

    def extract_output(self, acc):
        return acc


class ExactDedup(beam.PTransform):
    """Occurrences (with ``text``) -> (occurrences with ``unit_id``, distinct units).

    Distinct units are dicts ``{unit_id, text, occurrence_count}``; occurrences drop their text,
    which from here on lives once per distinct unit.
    """

    def expand(self, occurrences):
        with_ids = occurrences | "Hash" >> beam.Map(lambda o: {**o, "unit_id": unit_id(o["text"])})
        units = (
            with_ids
            | "ByUnit" >> beam.Map(lambda o: (o["unit_id"], o["text"]))
            | "Count" >> beam.CombinePerKey(_CountText())
            | "Unit" >> beam.MapTuple(lambda uid, tc: {"unit_id": uid, "text": tc[0], "occurrence_count": tc[1]})
        )
        slim = with_ids | "DropText" >> beam.Map(lambda o: {k: v for k, v in o.items() if k != "text"})
        return slim, units
