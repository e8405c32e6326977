"""``hyperscene compress``: read a corpus, and write a store version that decompresses byte for byte.

read -> segment -> exact dedup -> count tokens -> embed (RunInference) -> train codebook (one
worker, side input) -> assign hyperwords -> near-duplicates per cluster -> write tables -> publish.
From exact dedup on, elements are buckets of units (``schemas/unit_bucket.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from hyperscene.pipelines import cliutil, job, runners
from hyperscene.pipelines.config import (
    DEFAULT_CODEBOOK_SAMPLE,
    DEFAULT_EMBEDDER,
    EMBEDDERS,
    INPUT_FORMATS,
    DEFAULT_VECTORS,
    VECTOR_ENCODINGS,
    CompressConfig,
)
from hyperscene.schemas import SHARDED_TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import (AssignHyperwords, TrainCodebook, TrainQuantizer, centroid_row, codebook_baseline,
                                            hyperword_table_rows)
from hyperscene.transforms.dedup import ExactDedup, bucket_count
from hyperscene.transforms.embed import Embed, SentenceTransformerModelHandler
from hyperscene.transforms import heap
from hyperscene.transforms.errors import Errors, StoreError
from hyperscene.transforms.manifest_warnings import model_warnings
from hyperscene.transforms.models import PRECISIONS, torch_dtype
from hyperscene.transforms.levels import BuildLevels, group_count
from hyperscene.transforms.near_dup import DEFAULT_THRESHOLDS, NearDuplicates
from hyperscene.transforms.near_dup_verify import main_script
from hyperscene.transforms.inputs import InputFile, discover
from hyperscene.transforms.read import ReadDocuments
from hyperscene.transforms.spill import SpillPolicy
from hyperscene.transforms.scenes import SceneConfig
from hyperscene.transforms.segment import Segment, document_table, load_spacy
from hyperscene.transforms.store.layout import published_versions, version_dir
from hyperscene.transforms.store.publish import ManifestInfo, PublishVersion
from hyperscene.transforms.store.writer import WriteTable, write_vector_file
from hyperscene.transforms.store.vector_codec import quantizer_rows
from hyperscene.transforms.tokens import CountTokens

logger = logging.getLogger("hyperscene")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene compress",
        description="Compress a corpus into a Parquet store. Unrecognised --flags go to Apache Beam "
        "(--runner, --direct_num_workers, --setup_file, ...).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories (recursive) or quoted glob patterns")
    p.add_argument("--out", required=True, help="store directory to create (local, gs://, s3://)")
    g = p.add_argument_group("input")
    g.add_argument("--input-format", default="auto", choices=INPUT_FORMATS, help="default: by file extension")
    g.add_argument("--text-field", default="text", help="JSONL/Parquet field holding the text (default: text)")
    g.add_argument("--id-field", help="JSONL/Parquet field holding the document id (default: SOURCE:RECORD)")
    g = p.add_argument_group("segmentation")
    g.add_argument("--lang", default="en", help="spaCy language code of the blank pipeline; xx for a corpus that mixes languages (default: en)")
    g.add_argument("--spacy-model", help="an installed spaCy pipeline to use instead, e.g. en_core_web_sm")
    g.add_argument("--max-unit-tokens", type=int,
                   help="cut longer sentences (in spaCy tokens) into clauses (default: 8 for ru, 9 for xx, 10 otherwise)")
    g = p.add_argument_group("embedding")
    g.add_argument("--model", help="minilm (English), e5-small (multilingual), or any sentence-transformers name "
                   "or local folder (default: minilm for en, e5-small for every other --lang)")
    g.add_argument("--embedder", default=DEFAULT_EMBEDDER, choices=EMBEDDERS,
                   help="torch: the model itself; static: a model2vec table distilled from it, ~100x faster; "
                        "openvino: the model exported to OpenVINO, same vectors, faster on a CPU "
                        f"(default: {DEFAULT_EMBEDDER})")
    g.add_argument("--cache-dir", help="where distilled static and exported OpenVINO models are kept (default: $HYPERSCENE_CACHE or ~/.cache/hyperscene)")
    g.add_argument("--allow-download", action="store_true", help="let a model name not in the local cache be downloaded")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: cpu)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="what the torch embedder computes in; auto: float16 on cuda, bfloat16 on a CPU that has it in "
                        "hardware (Intel AMX), float32 elsewhere (default: auto)")
    g.add_argument("--batch-size", type=int, help="texts per forward pass (default: 64 on the CPU, 512 on cuda, 4096 for static)")
    g = p.add_argument_group("codebook and near-duplicates")
    g.add_argument("--codebook-size", type=int, help="hyperwords (default: about 2*sqrt(distinct units))")
    g.add_argument("--codebook-sample", type=int, default=DEFAULT_CODEBOOK_SAMPLE,
                   help=f"units the k-means is trained on (default: {DEFAULT_CODEBOOK_SAMPLE:,})")
    g.add_argument("--seed", type=int, default=0, help="k-means seed (default: 0)")
    g.add_argument("--near-dup-threshold", type=float,
                   help="cosine at or above which units are near-duplicate candidates (default: measured per "
                        "model and embedder: " + "; ".join(f"{m} " + ", ".join(f"{e} {t}" for e, t in by.items())
                                                           for m, by in DEFAULT_THRESHOLDS.items()) + ")")
    g.add_argument("--near-dup-check", default="words", choices=("words", "none"),
                   help="words: a candidate merges only if its words match (same words, or at most two function "
                        "words apart; order, numbers, negations and names must agree); none: the cosine alone (default: words)")
    g = p.add_argument_group("scenes")
    g.add_argument("--levels", type=int, help="scene levels above the units at most; the top one is each document's root "
                   "(default: as many as it takes to reach one root per document)")
    g.add_argument("--scene-min-units", type=int, default=SceneConfig.min_units,
                   help=f"units per level-1 scene, at least (default: {SceneConfig.min_units}; shorter documents are one scene)")
    g.add_argument("--scene-max-units", type=int, default=SceneConfig.max_units,
                   help=f"units per level-1 scene, at most (default: {SceneConfig.max_units})")
    g.add_argument("--level-codebook-sizes", type=_int_list, default=(), metavar="K1,K2,...",
                   help="codes in the codebook of level 1, 2, ... (default: about 2*sqrt(scenes at that level), so they shrink with the level)")
    g = p.add_argument_group("output and execution")
    g.add_argument("--num-shards", type=int, default=1, help="Parquet files per large table (default: 1)")
    g.add_argument("--vectors", default=DEFAULT_VECTORS, choices=VECTOR_ENCODINGS,
                   help="how the store keeps each unit's embedding, which refresh uses to find the stored units a new one "
                        "could repeat: pq (product quantization, 1 byte per 4 dimensions), int8 (1 byte a dimension), "
                        "float16, or none (the smallest store, which cannot be refreshed or retrained); a refresh decides "
                        "on vectors embedded again from text whichever is kept (see README, Vectors) "
                        f"(default: {DEFAULT_VECTORS})")
    g.add_argument("--workers", type=int, default=1,
                   help="local worker processes (DirectRunner multi_processing mode; default: 1, in-process)")
    return p


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, such as 512,64,16; not {text!r}") from None


def parse(argv: list[str]) -> CompressConfig:
    args, beam_args = build_parser().parse_known_args(argv)
    cliutil.check_beam_args(beam_args)
    cliutil.check_workers(args.workers)
    beam_args += runners.local_worker_flags(args.workers, beam_args)
    cfg = CompressConfig(
        inputs=tuple(args.inputs),
        out=args.out,
        input_format=args.input_format,
        text_field=args.text_field,
        id_field=args.id_field,
        lang=args.lang,
        spacy_model=args.spacy_model,
        max_unit_tokens=args.max_unit_tokens,
        model=args.model,
        embedder=args.embedder,
        cache_dir=args.cache_dir,
        allow_download=args.allow_download,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        codebook_size=args.codebook_size,
        codebook_sample=args.codebook_sample,
        seed=args.seed,
        near_dup_threshold=args.near_dup_threshold,
        near_dup_check=args.near_dup_check,
        levels=args.levels,
        scene_min_units=args.scene_min_units,
        scene_max_units=args.scene_max_units,
        level_codebook_sizes=args.level_codebook_sizes,
        num_shards=args.num_shards,
        vectors=args.vectors,
        beam_args=tuple(beam_args),
    )
    from hyperscene.transforms.models import check_embedder

    check_embedder(cfg.embedder, cfg.device)  # a missing GPU or package fails here, before any work
    return cfg


def _pairs(name, value_fn=lambda _: 1):
    return beam.Map(lambda x: (name, value_fn(x)))


def _bucket_stats(bucket: UnitBucket):
    import pyarrow.compute as pc

    units = bucket.units
    occurrences = units.column("occurrence_count")
    yield "units", bucket.occurrences.num_rows
    yield "distinct_units", units.num_rows
    yield "tokens", pc.sum(pc.multiply(occurrences, units.column("token_count"))).as_py() or 0
    yield "words", pc.sum(pc.multiply(occurrences, units.column("word_count"))).as_py() or 0
    # For W002: an English model on text in other scripts.
    yield "non_latin_units", sum(main_script(t) not in ("latin", "") for t in units.column("text").to_pylist())
    if "hyperword_score" in units.column_names:  # the codebook's baseline for drift (see refresh)
        yield "_hyperword_distance_total", float(np.sum(1.0 - units.column("hyperword_score").to_numpy(), dtype=np.float64))


def build_pipeline(p: beam.Pipeline, cfg: CompressConfig, files: list[InputFile], model_folder: str,
                   embedder_folder: str, dimension: int, info: ManifestInfo, path: str, scratch: str):
    """Wire the stages. Tokens are always counted with ``model_folder``'s tokenizer, so figures
    compare across embedders; vectors come from ``embedder_folder`` and are spilled to files under
    ``scratch``. From exact dedup to the writes, elements are UnitBuckets (a few thousand units
    each), not single units."""
    n_buckets = bucket_count(sum(f.size for f in files))
    spill = SpillPolicy.for_scratch(FileSystems.join(scratch, "rows"))  # long documents' texts and rows, between stages
    read = p | "Read" >> ReadDocuments(files, cfg.text_field, cfg.id_field, spill=spill)
    segmented = read["documents"] | "Segment" >> Segment(cfg.lang, cfg.spacy_model, cfg.max_unit_tokens)
    buckets = segmented.occurrences | "ExactDedup" >> ExactDedup(n_buckets, spill=spill)
    # auto is resolved here, once: every worker then runs what the manifest records, whatever its CPU.
    handler = SentenceTransformerModelHandler(embedder_folder, embedder=cfg.embedder, device=cfg.device, batch_size=cfg.batch_size,
                                              precision=torch_dtype(cfg.device, cfg.embedder, cfg.precision))
    static = embedder_folder if cfg.embedder == "static" else None  # then counting's tokens serve the look-up too
    embedded = (buckets | "CountTokens" >> CountTokens(model_folder, static_folder=static)
                | "Embed" >> Embed(handler, spill_to=FileSystems.join(scratch, "vectors")))
    centroids = embedded | "TrainCodebook" >> TrainCodebook(cfg.codebook_size, cfg.seed, dimension, cfg.codebook_sample)
    assigned = embedded | "AssignHyperwords" >> AssignHyperwords(centroids)
    near = assigned | "NearDuplicates" >> NearDuplicates(cfg.near_dup_threshold, n_groups=n_buckets, lang=cfg.lang, check=cfg.near_dup_check)
    hyperwords = centroids | "HyperwordRows" >> beam.FlatMap(hyperword_table_rows, clusters=beam.pvalue.AsList(near.clusters))
    levels = assigned | "BuildLevels" >> BuildLevels(cfg.scene_config(), cfg.level_codebook_sizes, cfg.seed, spill=spill,
                                                      groups=group_count(n_buckets))

    tables = {
        "documents": segmented.documents | "FirstRevision" >> beam.Map(document_table, revisions=None, version=info.version),
        "units": assigned | "UnitRows" >> beam.Map(lambda b: b.units),
        "occurrences": levels["occurrences"],
        "hyperwords": hyperwords,
        "provenance": near.provenance,
        "dead_letters": read["dead_letters"],
        "scenes": levels["scenes"],
        "codebooks": levels["codebooks"],
        "centroids": (hyperwords, levels["codebooks"]) | "CodebookCentroids" >> beam.Flatten() | "CentroidRows" >> beam.Map(centroid_row),
    }
    files_written = [
        rows | f"Write {name}" >> WriteTable(name, path, cfg.num_shards if name in SHARDED_TABLES else 1)
        for name, rows in tables.items()
    ]
    if cfg.vectors == "pq":
        quantizer = embedded | "TrainQuantizer" >> TrainQuantizer(cfg.seed, dimension)
        files_written.append(quantizer | "QuantizerRows" >> beam.FlatMap(quantizer_rows) | "Write quantizer" >> WriteTable("quantizer", path, 1))
        files_written.append(assigned | "Write vectors" >> beam.Map(write_vector_file, version_path=path, version=info.version,
                                                                    encoding=cfg.vectors, quantizer=beam.pvalue.AsSingleton(quantizer)))
    elif cfg.vectors != "none":
        files_written.append(assigned | "Write vectors" >> beam.Map(write_vector_file, version_path=path, version=info.version,
                                                                    encoding=cfg.vectors))
    files_written = files_written | "AllFiles" >> beam.Flatten()

    stats = [
        segmented.documents | "NDocs" >> _pairs("documents", len),
        segmented.documents | "NBytes" >> _pairs("input_bytes", lambda docs: sum(d["bytes"] for d in docs)),
        assigned | "NUnits" >> beam.FlatMap(_bucket_stats),
        near.provenance | "NMerges" >> _pairs("near_duplicate_units", lambda t: t.num_rows),
        near.clusters | "NMergedOcc" >> _pairs("near_duplicate_occurrences", lambda c: c["near_duplicate_occurrences"]),
        near.clusters | "NCandidates" >> _pairs("near_duplicate_candidates", lambda c: c["near_duplicate_candidates"]),
        centroids | "NCodes" >> _pairs("codebook_size", len),
        read["dead_letters"] | "NDead" >> _pairs("dead_letters"),
        levels["levels"],
    ] | "AllStats" >> beam.Flatten()
    return (files_written, stats) | "Publish" >> PublishVersion(path, info)


def next_version(out: str) -> int:
    """The version compress writes: 1, into a store with no published version (lock held)."""
    versions = published_versions(out)
    if versions:
        raise StoreError(Errors.E406.format(out=out, version=versions[-1]))
    return 1


def complete_sections(sections: dict, stats: dict) -> dict:
    """The manifest sections once the pipeline's statistics are in: the codebook's baseline distance."""
    return codebook_baseline(sections, stats)


def run(argv: list[str]) -> dict:
    """Compress; returns the published manifest plus per-stage timings (``stages``, not stored:
    they describe this run, not the store). Raises HypersceneError on bad input or options."""
    started = time.time()
    cfg = parse(argv)
    heap.return_freed_memory()
    cliutil.create_runner(PipelineOptions(list(cfg.beam_args)))  # an unknown --runner fails now
    files = discover(list(cfg.inputs), cfg.input_format, exclude=(cfg.out,))
    load_spacy(cfg.lang, cfg.spacy_model)  # fail now, not on a worker, on an unknown language
    model = job.load_model(cfg)
    if os.path.isfile(cfg.out):
        raise StoreError(Errors.E407.format(out=cfg.out))
    with job.locked(cfg.out, "compress"):
        version = next_version(cfg.out)
        identity = model.identity
        logger.info("compressing %d input files into %s (model %s, %s embedder, %d dims)", len(files),
                    version_dir(cfg.out, version), cfg.model, cfg.embedder, identity.dimension)
        info = ManifestInfo(config=cfg.as_manifest(), model=identity.as_dict(), started_at=started, version=version,
                            sections={"codebook": {"trained_in_version": version, "baseline_mean_distance": None}},
                            complete=complete_sections)

        def build(p, path, scratch):
            build_pipeline(p, cfg, files, model.folder, model.embedder_folder, identity.dimension, info, path, scratch)

        needed = job.disk_needed(sum(f.size for f in files), identity.dimension)
        manifest, stages = job.write_version(cfg.out, version, build, cfg.beam_args, needed)
    warn_if_blind(manifest)
    return {**manifest, "stages": stages}


print_result = job.print_summary


def warn_if_blind(manifest: dict) -> None:
    for line in model_warnings(manifest):
        logger.warning(line)
