"""One codebook per level: a sample of each level's scene centroids, k-means on it, and per-code statistics.

Like the hyperwords', a level's codebook is a global step: every document's scenes of that level
feed one bounded sample (:class:`LevelSample`), FAISS k-means trains on it (:func:`train_level`),
and after coding, each code's scene count and most central scene are gathered (:class:`CodeStats`)
for the ``codebooks`` table (:func:`codebook_rows`) and the manifest's per-level counts
(:func:`level_stats`).
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import apache_beam as beam
import numpy as np

from hyperscene.transforms.codebook import default_codebook_size, train_codebook
from hyperscene.transforms.levels.encode import scene_id
from hyperscene.transforms.progress import stage_timer
from hyperscene.transforms.scenes import Level
from hyperscene.transforms.spill import as_rows

LEVEL_SAMPLE = 200_000  # scenes per level the k-means is trained on at most


def level_centroids(doc_id: str, levels: list[Level]) -> Iterator[tuple[int, tuple[list[str], np.ndarray]]]:
    """(level, (sample keys, centroids)) of one document's levels (a whole one's, or those above a
    long one's windows), one element per level."""
    for lv in levels:
        # Hashes of scene ids order the sample: uniform over documents, independent of arrival order.
        keys = [hashlib.blake2b(scene_id(doc_id, lv.level, i).encode(), digest_size=8).hexdigest() for i in range(len(lv))]
        yield lv.level, (keys, lv.centroids)


def group_level_centroids(group) -> Iterator[tuple[int, tuple[list[str], np.ndarray]]]:
    """:func:`level_centroids` of every document of a :class:`~.encode.DocumentGroup`, one element per level."""
    by_level: dict[int, list] = {}
    for doc_id, levels in zip(group.doc_ids, group.levels):
        for level, part in level_centroids(doc_id, levels):
            by_level.setdefault(level, []).append(part)
    for level, parts in sorted(by_level.items()):
        yield level, ([k for keys, _ in parts for k in keys], np.concatenate([c for _, c in parts]))


class LevelSample(beam.CombineFn):
    """Per level: (its scene count, the centroids of its ``sample`` scenes with the smallest keys,
    in key order). Keys are hashes, so the sample is uniform over documents and does not depend on
    the order scenes arrive in. Only keys that can still be among the smallest are held, so memory is
    bounded by the sample however many scenes a level has (one huge document has hundreds of
    thousands), and every scene is sorted a bounded number of times."""

    def __init__(self, sample: int = LEVEL_SAMPLE):
        self._sample = sample

    def create_accumulator(self):
        return [0, [], None, 0]  # scenes seen, held (keys, centroids) parts, the largest key worth holding, rows held

    def add_input(self, acc, part):
        keys, centroids = part
        acc[0] += len(keys)
        self._hold(acc, np.asarray(keys, dtype="U16"), centroids)
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            out[0] += acc[0]
            for keys, centroids in acc[1]:
                self._hold(out, keys, centroids)
        return out

    def extract_output(self, acc):
        self._compact(acc)
        return acc[0], acc[1][0][1]

    def _hold(self, acc, keys, centroids):
        if acc[2] is not None:  # the sample is full: only smaller keys can enter it
            keep = keys < acc[2]
            keys, centroids = keys[keep], centroids[keep]
        if len(keys):
            acc[1].append((keys, centroids))
            acc[3] += len(keys)
        if acc[3] > self._sample + self._sample // 4:
            self._compact(acc)

    def _compact(self, acc):
        keys = np.concatenate([k for k, _ in acc[1]])
        order = np.argsort(keys, kind="stable")[: self._sample]
        acc[1] = [(keys[order], np.concatenate([c for _, c in acc[1]])[order])]
        acc[3] = len(order)
        if len(order) == self._sample:
            acc[2] = keys[order[-1]]


def train_level(level: int, sample, sizes: tuple[int, ...] = (), seed: int = 0) -> tuple[int, np.ndarray]:
    """(level, its codebook): FAISS k-means on the level's :class:`LevelSample` (count, centroids)."""
    count, centroids = sample
    size = sizes[level - 1] if level <= len(sizes) else default_codebook_size(count)
    with stage_timer("train level codebooks", len(centroids)):
        return level, train_codebook(centroids, size, seed + level)


def window_keys(doc_id: str, level: int, window: int, count: int) -> list[str]:
    """Sample keys of scenes cut inside a window. Their index in the document is not known there,
    so the key hashes the window and the index in it: still uniform and the same on every runner."""
    return [hashlib.blake2b(f"{doc_id}#{level}.w{window}.{i}".encode(), digest_size=8).hexdigest() for i in range(count)]


class CodeStats(beam.CombineFn):
    """Per code: (scene count, best score, most central scene id); ties go to the smallest id, so
    the result does not depend on the order scenes arrive in."""

    def create_accumulator(self):
        return (0, None, None)

    def add_input(self, acc, member):
        score, sid = member
        return self.merge_accumulators([acc, (1, score, sid)])

    def merge_accumulators(self, accumulators):
        count, best, best_id = 0, None, None
        for n, score, sid in accumulators:
            count += n
            if score is not None and (best is None or score > best or (score == best and sid < best_id)):
                best, best_id = score, sid
        return count, best, best_id

    def extract_output(self, acc):
        return acc


def codebook_rows(level: int, centroids: np.ndarray, stats: dict | None = None) -> Iterator[dict]:
    """Every code of one level as a row, with its scene count and most central scene."""
    for code, centroid in enumerate(centroids):
        count, score, sid = (stats or {}).get((level, code), (0, None, None))
        yield {"level": level, "code": code, "centroid": centroid.tolist(), "scene_count": count,
               "representative_scene_id": sid, "representative_score": score}


def level_stats(scenes):
    """("level_<L>_scenes", scenes) and ("level_<L>_tokens", tokens) pairs of one document's scenes
    table (or spilled rows of one), summed over documents into the manifest's counts."""
    scenes = as_rows(scenes).load(["level", "token_count"])
    levels = scenes.column("level").to_numpy()
    tokens = scenes.column("token_count").to_numpy()
    for level in np.unique(levels):
        yield f"level_{level}_scenes", int((levels == level).sum())
        yield f"level_{level}_tokens", int(tokens[levels == level].sum())
