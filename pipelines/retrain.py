"""``hyperscene retrain``: train a store's codebooks again, as a new version, keeping ids where they can be.

Run by ``hyperscene refresh --retrain-if-drift X`` when a refresh's units sit too far from their
hyperwords, or by hand. Nothing is segmented again, and the stored vectors are used as they are,
except pq codes: decoded, they would move about one unit in eight to another hyperword than the
embedded vectors do (README, "Vectors"), so a store that keeps pq codes has every unit embedded again
from its text with the store's model (see :mod:`hyperscene.transforms.retrain`). The new version's
manifest holds the id-stability report under ``retrain.stability``.
"""

from __future__ import annotations

import argparse
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines import cliutil, job, runners
from hyperscene.schemas import SCENES, SHARDED_TABLES
from hyperscene.transforms import refresh as rf
from hyperscene.transforms import retrain as rt
from hyperscene.transforms.codebook import AssignHyperwords, TrainCodebook, centroid_row, hyperword_table_rows
from hyperscene.transforms.dedup import bucket_count
from hyperscene.transforms.embed import Embed
from hyperscene.transforms.levels import CodeStats, codebook_rows, level_stats
from hyperscene.transforms.model_catalog import DEFAULT_MODEL
from hyperscene.transforms.near_dup import NearDuplicates, default_threshold
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import stage_timer
from hyperscene.transforms.store.publish import ManifestInfo, PublishVersion
from hyperscene.transforms.store.reader import StoreVersion, frozen_codebooks
from hyperscene.transforms.store.writer import WriteTable, write_vector_rows

logger = logging.getLogger("hyperscene")

# Tables a retrain leaves as they are: their stored files are shared, not rewritten.
SHARED_TABLES = ("documents", "dead_letters", "quantizer")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene retrain",
        description="Train the codebooks of a store's latest version again, started from the stored ones, and write "
        "the result as a new version with an id-stability report. Unrecognised --flags go to Apache Beam.",
    )
    p.add_argument("store", help="a store written by hyperscene compress")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1)")
    return p


class _RecodeDoFn(beam.DoFn):
    def process(self, item, codebooks: dict):
        doc_id, occurrences, scenes, centroids = item
        if occurrences is None:  # an empty document: no units, so no codes to change
            if scenes.num_rows:
                yield scenes
            return
        with stage_timer("recode scenes", occurrences.num_rows):
            table, occ, members, (kept, compared) = rt.recode_document(doc_id, occurrences, scenes, centroids, codebooks)
        yield table
        yield beam.pvalue.TaggedOutput("occurrences", occ)
        for level, code, sid, score in members:
            yield beam.pvalue.TaggedOutput("members", ((level, code), (score, sid)))
        yield beam.pvalue.TaggedOutput("stats", ("_occurrences_kept_semantic_id", kept))
        yield beam.pvalue.TaggedOutput("stats", ("_occurrences_compared", compared))


def build_pipeline(p, stored: StoreVersion, info: ManifestInfo, path: str, shared: list[dict], handler=None, scratch: str = ""):
    """``handler``: the embedding model's, when the store keeps pq codes (every unit is embedded again)."""
    cfg = stored.manifest["config"]
    version, seed = info.version, cfg.get("seed", 0)
    n = bucket_count(stored.manifest["counts"].get("input_bytes", 0))
    centroids, level_books = frozen_codebooks(stored)
    dimension = stored.manifest["model"]["dimension"]
    threshold = cfg.get("near_dup_threshold") or default_threshold(cfg.get("model", DEFAULT_MODEL), cfg.get("embedder", "torch"))

    stored_vectors = job.read_stored(p, "vectors", stored, "vectors") | "VectorsByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n)
    buckets = (
        {
            "units": job.read_stored(p, "units", stored, "units") | "UnitsByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n),
            "vectors": stored_vectors,
            "occurrences": job.read_stored(p, "occurrences", stored, "occurrences", columns=rt.OCCURRENCE_COLUMNS)
            | "OccurrencesByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n),
        }
        | "Join" >> beam.CoGroupByKey()
        | "Buckets" >> beam.FlatMap(rt.bucket_from_store, dimension=dimension, embedded_again=handler is not None)
    )
    if handler is not None:
        buckets = buckets | "Embed" >> Embed(handler, spill_to=FileSystems.join(scratch, "vectors"))
    trained = buckets | "TrainCodebook" >> TrainCodebook(cfg.get("codebook_size"), seed, dimension,
                                                         cfg.get("codebook_sample") or 200_000, init=centroids)
    assigned = buckets | "AssignHyperwords" >> AssignHyperwords(trained)
    near = assigned | "NearDuplicates" >> NearDuplicates(threshold, n_groups=n, lang=cfg.get("lang", "en"), check=cfg.get("near_dup_check", "none"))
    hyperwords = trained | "HyperwordRows" >> beam.FlatMap(hyperword_table_rows, clusters=beam.pvalue.AsList(near.clusters))

    documents = (
        {"occurrences": assigned | "OccurrencesByDoc" >> beam.FlatMap(rt.document_occurrences),
         "scenes": job.read_stored(p, "scenes", stored, "scenes", columns=SCENES.names) | "ScenesByDoc" >> beam.FlatMap(rt.by_document)}
        | "JoinDocs" >> beam.CoGroupByKey()
        | "SceneCentroids" >> beam.FlatMap(rt.with_scene_centroids)
    )
    books = (
        documents
        | "LevelSamples" >> beam.FlatMap(rt.level_samples)
        | "ByLevel" >> beam.GroupByKey()
        | "RetrainLevels" >> beam.MapTuple(rt.retrain_level, init=dict(level_books),
                                           sizes=tuple(cfg.get("level_codebook_sizes") or ()), seed=seed)
    )
    recoded = (
        documents
        | "Recode" >> SplitOutputs(_RecodeDoFn(), codebooks=beam.pvalue.AsDict(books), tags=("occurrences", "members", "stats"),
                                  main="scenes")
    )
    code_stats = recoded.members | "CodeStats" >> beam.CombinePerKey(CodeStats())
    units = assigned | "UnitRows" >> beam.Map(rt.unit_rows)
    tables = {
        "units": units,
        "occurrences": recoded.occurrences,
        "hyperwords": hyperwords,
        "provenance": near.provenance,
        "scenes": recoded.scenes,
        "codebooks": books | "CodebookRows" >> beam.FlatMapTuple(codebook_rows, stats=beam.pvalue.AsDict(code_stats)),
    }
    tables["centroids"] = (tables["hyperwords"], tables["codebooks"]) | "CodebookCentroids" >> beam.Flatten() | "CentroidRows" >> beam.Map(centroid_row)
    shards = cfg.get("num_shards", 1)
    written = [rows | f"Write {name}" >> WriteTable(name, path, shards if name in SHARDED_TABLES else 1)
               for name, rows in tables.items()]
    written.append(
        {"vectors": stored_vectors, "units": assigned | "NewHyperwords" >> beam.Map(lambda b: (b.bucket, b.units.select(["unit_id", "hyperword"])))}
        | "JoinVectors" >> beam.CoGroupByKey()
        | "VectorRows" >> beam.Map(rt.vectors_with_hyperwords)
        | "Write vectors" >> beam.Map(write_vector_rows, version_path=path, version=version))
    written.append(p | "SharedFiles" >> beam.Create(shared))
    files_written = written | "AllFiles" >> beam.Flatten()

    counts = stored.manifest["counts"]
    kept_counts = [(k, counts[k]) for k in ("documents", "deleted_documents", "input_bytes", "dead_letters") if k in counts]
    stats = [
        p | "KeptCounts" >> beam.Create(kept_counts + [("near_duplicate_units", 0), ("near_duplicate_occurrences", 0)]),
        units | "UnitStats" >> beam.FlatMap(rf.unit_stats),
        assigned | "Stability" >> beam.FlatMap(rt.unit_stability),
        near.provenance | "NMerges" >> beam.Map(lambda t: ("near_duplicate_units", t.num_rows)),
        near.clusters | "NMergedOcc" >> beam.Map(lambda c: ("near_duplicate_occurrences", c["near_duplicate_occurrences"])),
        trained | "NCodes" >> beam.Map(lambda c: ("codebook_size", len(c))),
        recoded.scenes | "LevelStats" >> beam.FlatMap(level_stats),
        books | "LevelSizes" >> beam.MapTuple(lambda level, c: (f"level_{level}_codebook_size", len(c))),
        recoded.stats,
    ] | "AllStats" >> beam.Flatten()
    return (files_written, stats) | "Publish" >> PublishVersion(path, info)


def embedding_handler(stored: StoreVersion, beam_args: list[str]):
    """The store's own model, loaded here so that a missing or different one fails before any work."""
    from hyperscene.pipelines.refresh import store_config
    from hyperscene.transforms.embed import SentenceTransformerModelHandler
    from hyperscene.transforms.errors import Errors, StoreError
    from hyperscene.transforms.models import torch_dtype

    options = argparse.Namespace(inputs=[stored.store], device="cpu", batch_size=None, precision="auto", input_format=None,
                                 text_field=None, id_field=None, cache_dir=None)
    cfg = store_config(stored, options, beam_args)
    model = job.load_model(cfg)
    if model.identity.fingerprint != stored.manifest["model"].get("fingerprint"):
        raise StoreError(Errors.E408.format(model=cfg.model, found=model.identity.fingerprint[:12],
                                            stored=stored.manifest["model"].get("fingerprint", "?")[:12]))
    return SentenceTransformerModelHandler(model.embedder_folder, embedder=cfg.embedder, device=cfg.device, batch_size=cfg.batch_size,
                                           precision=torch_dtype(cfg.device, cfg.embedder, cfg.precision))


def retrain(store: str, beam_args: list[str], reason: str, started: float | None = None) -> dict:
    """Retrain the latest version into the next one; the caller holds the store's lock."""
    started = started or time.time()
    stored = job.base_version(store, "retrain")
    version = stored.version + 1
    info = ManifestInfo(
        config={**stored.manifest["config"], "out": store}, model=stored.manifest["model"], started_at=started, version=version,
        sections={"codebook": {"trained_in_version": version, "baseline_mean_distance": None},
                  "retrain": {"from_version": stored.version, "reason": reason, "stability": None}},
        complete=rt.complete_sections,
    )
    logger.info("retraining the codebooks of %s version %d into version %d (%s)", store, stored.version, version, reason)

    handler = embedding_handler(stored, beam_args) if stored.quantizer() is not None else None

    def build(p, path, scratch):
        build_pipeline(p, stored, info, path, job.shared_files(stored, SHARED_TABLES), handler, scratch)

    manifest, stages = job.write_version(store, version, build, beam_args, job.written_bytes(stored, SHARED_TABLES))
    s = manifest["retrain"]["stability"]
    logger.info("version %d published: %s of %s units kept their hyperword (%s), %s of %s occurrences their semantic id (%s)",
                version, f"{s['units_kept_hyperword']:,}", f"{s['units']:,}", s["units_kept_hyperword_share"],
                f"{s['occurrences_kept_semantic_id']:,}", f"{s['occurrences']:,}", s["occurrences_kept_semantic_id_share"])
    return {**manifest, "stages": stages}


def run(argv: list[str]) -> dict:
    started = time.time()
    args, beam_args = build_parser().parse_known_args(argv)
    cliutil.check_beam_args(beam_args)
    cliutil.check_workers(args.workers)
    beam_args += runners.local_worker_flags(args.workers, beam_args)
    with job.locked(args.store, "retrain"):
        return retrain(args.store, beam_args, "asked for", started)


print_result = job.print_summary
