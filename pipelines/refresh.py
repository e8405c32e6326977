"""``hyperscene refresh``: add new and changed documents to a store as a new version.

The input is the whole corpus as it stands now. Documents whose id and sha256 the latest version
already holds are skipped; new ones are added, changed ones become a new revision, and with
``--delete-missing`` the ones no longer in the input are marked deleted. Only units never stored
are embedded; they are assigned to the frozen hyperwords and compared with the stored canonical
units for near-duplicates, and the new documents' scenes are coded with the frozen level codebooks
(see :mod:`hyperscene.transforms.refresh`). Nothing to change: no new version, and it says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines import cliutil, job, runners
from hyperscene.pipelines.config import INPUT_FORMATS, CompressConfig
from hyperscene.transforms import heap
from hyperscene.transforms import refresh as rf
from hyperscene.transforms.codebook import centroid_row
from hyperscene.transforms.dedup import bucket_count, bucket_slices
from hyperscene.transforms.embed import Embed, SentenceTransformerModelHandler
from hyperscene.transforms.errors import Errors, InvalidOption, StoreError
from hyperscene.transforms.levels import BuildLevels, CodeStats, codebook_rows, group_count, level_stats
from hyperscene.transforms.models import PRECISIONS, torch_dtype
from hyperscene.transforms.near_dup import cluster_parts
from hyperscene.transforms.inputs import check_distinct_sources, discover
from hyperscene.transforms.read import ReadDocuments, dead_letter, duplicate_id_reason, read_input_file
from hyperscene.transforms.segment import Segment, document_table, load_spacy
from hyperscene.transforms.spill import SpillPolicy
from hyperscene.schemas import SHARDED_TABLES
from hyperscene.transforms.store.layers import PER_DOCUMENT_TABLES
from hyperscene.transforms.store.publish import ManifestInfo, PublishVersion
from hyperscene.transforms.store.reader import StoreVersion, frozen_codebooks
from hyperscene.transforms.store.writer import WriteTable, write_vector_file
from hyperscene.transforms.tokens import CountTokens

logger = logging.getLogger("hyperscene")

# Tables whose stored files a refresh lists as they are, without rewriting them: its own rows go into
# files of their own beside them. Rows of old revisions stay in the shared occurrences and scenes
# files, and a unit whose count changed gets a newer row; readers keep what the version holds
# (transforms/store/layers.py).
SHARED_TABLES = ("vectors", "quantizer", "centroids", "occurrences", "scenes", "provenance", "dead_letters", "units")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene refresh",
        description="Add new and changed documents to a store as a new version, with the store's frozen codebooks. "
        "Give the whole corpus as it is now: unchanged documents are skipped. Unrecognised --flags go to Apache Beam.",
    )
    p.add_argument("store", help="a store written by hyperscene compress")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories (recursive) or quoted glob patterns")
    p.add_argument("--delete-missing", action="store_true",
                   help="mark stored documents that are not in the input as deleted in the new version (default: keep them)")
    p.add_argument("--retrain-if-drift", type=float, metavar="RATIO",
                   help="when the new units' mean distance to their hyperwords exceeds RATIO times the distance when the "
                        "codebook was trained (drift.ratio in the manifest), retrain the codebooks into one more version "
                        "and report how many ids stayed (default: never; measured only from 10 units per hyperword, and even with no drift a store of fewer than about 5,000 distinct units reads above 1.1: see README, Drift)")
    g = p.add_argument_group("input (default: as the store was compressed)")
    g.add_argument("--input-format", choices=INPUT_FORMATS)
    g.add_argument("--text-field")
    g.add_argument("--id-field")
    g = p.add_argument_group("execution (the model, segmentation and codebooks are the store's own)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: cpu)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="what the torch embedder computes in, like --device a choice of this run (default: auto: "
                        "float16 on cuda, bfloat16 on a CPU that has it in hardware, float32 elsewhere)")
    g.add_argument("--batch-size", type=int, help="texts per forward pass (default: 64 on the CPU, 512 on cuda, 4096 for static)")
    g.add_argument("--cache-dir", help="where distilled static and exported OpenVINO models are kept")
    g.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1)")
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    args, beam_args = build_parser().parse_known_args(argv)
    cliutil.check_beam_args(beam_args)
    cliutil.check_workers(args.workers)
    if args.retrain_if_drift is not None and not args.retrain_if_drift > 0:
        raise InvalidOption(Errors.E224.format(value=args.retrain_if_drift))
    return args, beam_args + runners.local_worker_flags(args.workers, beam_args)


def store_config(stored: StoreVersion, args: argparse.Namespace, beam_args: list[str]) -> CompressConfig:
    """The compress settings the store was written with, and this run's input and execution options."""
    saved = dict(stored.manifest["config"])
    saved.setdefault("vectors", "float16")  # what every store kept before --vectors existed
    saved.update(
        inputs=tuple(args.inputs), out=stored.store, level_codebook_sizes=tuple(saved.get("level_codebook_sizes", ())),
        device=args.device, batch_size=args.batch_size, beam_args=tuple(beam_args),
        precision=args.precision,
        input_format=args.input_format or saved.get("input_format", "auto"),
        text_field=args.text_field or saved.get("text_field", "text"),
        id_field=args.id_field if args.id_field is not None else saved.get("id_field"),
    )
    if args.cache_dir:
        saved["cache_dir"] = args.cache_dir
    known = CompressConfig.__dataclass_fields__
    return CompressConfig(**{k: v for k, v in saved.items() if k in known})


def scan_input(files, text_field: str, id_field: str | None) -> tuple[dict[str, dict], list[dict]]:
    """Read every input file once: {doc_id: (sha256, bytes, path)} of the document each id keeps
    (the first by path and record, as ReadDocuments decides), and the input's dead letters, those
    for repeated ids included. Texts are not kept."""
    chosen: dict[str, dict] = {}
    dead: list[dict] = []
    for f in sorted(files, key=lambda f: f.path):  # records come in order within a file
        for tag, record in read_input_file(f, text_field, id_field):
            if tag != "documents":
                dead.append(record)
            elif record["doc_id"] in chosen:
                kept = chosen[record["doc_id"]]["path"]
                dead.append(dead_letter(record["source"], record["record"], duplicate_id_reason(record["doc_id"], kept),
                                        record["text"].encode("utf-8")))
            else:
                chosen[record["doc_id"]] = {"sha256": record["sha256"], "bytes": record["bytes"], "path": record["path"]}
    return chosen, dead


def _count(name):
    """(name, rows) of a PCollection of Arrow tables and row dicts."""
    return beam.Map(lambda t: (name, t.num_rows if hasattr(t, "num_rows") else 1))


def _joined_with_store(p, stored: StoreVersion, plan: rf.RefreshPlan, new_slices, n: int) -> dict:
    """The new documents' occurrences beside the stored units, the occurrences that leave and the
    stored near-duplicate members, each by bucket, for :class:`~hyperscene.transforms.refresh.MergeWithStore`."""
    return {
        "new": new_slices,
        "stored": job.read_stored(p, "units", stored, "units") | "UnitsByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n),
        "removed": job.read_stored(p, "removed", stored, "occurrences", columns=["doc_id", "unit_id"], only_docs_in=plan.removed)
        | "RemovedByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n),
        "members": job.read_stored(p, "members", stored, "provenance", columns=["unit_id"])
        | "MembersByBucket" >> beam.FlatMap(rf.by_bucket, n_buckets=n),
    }


def _stored_vectors(p, stored: StoreVersion, fresh, members):
    """The stored vectors rows of the canonical units of the hyperwords the fresh units joined."""
    touched = fresh | "Touched" >> beam.FlatMap(lambda b: sorted(set(b.units.column("hyperword").to_pylist())))
    member_ids = members | "MemberIds" >> beam.FlatMap(lambda kv: kv[1].column("unit_id").to_pylist())
    return (
        p | "StoredVectorFiles" >> beam.Create(job.stored_files(stored, "vectors"))
        | "StoredVectors" >> beam.FlatMap(rf.stored_vectors_for, hyperwords=beam.pvalue.AsList(touched),
                                          members=beam.pvalue.AsList(member_ids))
    )


def _matched_fresh_units(cfg: CompressConfig, stored: StoreVersion, quantizer, fresh, canonical_vectors, stored_units, embed, n: int):
    """Near-duplicates of fresh units, against the stored canonical units of their hyperwords that
    could be near-duplicates by their stored vectors, embedded again from their text."""
    fresh_parts = fresh | "FreshByGroup" >> beam.FlatMap(cluster_parts, n_groups=n)
    candidates = (
        {"fresh": fresh_parts, "stored": canonical_vectors | "CanonicalByGroup" >> beam.FlatMap(rf.stored_parts, n_groups=n)}
        | "Candidates" >> rf.StoredCandidates(cfg.near_dup_threshold, quantizer, stored_units)
    )
    embedded = candidates["buckets"] | "EmbedCandidates" >> embed()
    matched = (
        {"fresh": fresh_parts, "stored": embedded | "CandidatesByGroup" >> beam.FlatMap(cluster_parts, n_groups=n)}
        | "NearDuplicates" >> rf.MatchFreshUnits(cfg.near_dup_threshold, cfg.lang, stored.manifest["config"].get("near_dup_check", "none"))
    )
    return matched, candidates["stats"]


def build_pipeline(p, cfg: CompressConfig, stored: StoreVersion, plan: rf.RefreshPlan, files, new_dead: list[dict],
                   model_folder: str, embedder_folder: str, info: ManifestInfo, path: str, scratch: str,
                   shared: list[dict], process_bytes: int):
    version = info.version
    n = bucket_count(process_bytes)
    centroids, level_books = frozen_codebooks(stored)
    scene_cfg = cfg.scene_config()
    top = max((level for level, _ in level_books), default=None)
    if top is not None and (scene_cfg.levels is None or scene_cfg.levels > top):
        scene_cfg = dataclasses.replace(scene_cfg, levels=top)  # the frozen codebooks go no deeper

    # New and changed documents, segmented and bucketed as compress does.
    # Long documents' texts and rows may cross the shuffles as references to scratch files.
    spill = SpillPolicy.for_scratch(FileSystems.join(scratch, "rows"))
    read = p | "Read" >> ReadDocuments(files, cfg.text_field, cfg.id_field, spill=spill)
    process = plan.process
    docs = read["documents"] | "ToProcess" >> beam.Map(lambda batch: [d for d in batch if d["doc_id"] in process])
    segmented = docs | "Segment" >> Segment(cfg.lang, cfg.spacy_model, cfg.max_unit_tokens)
    new_documents = segmented.documents | "Revision" >> beam.Map(document_table, revisions=plan.revisions, version=version)

    joined = _joined_with_store(p, stored, plan, segmented.occurrences | "Bucket" >> beam.FlatMap(bucket_slices, n_buckets=n, spill=spill), n)
    # W002's count of units not in Latin script: the stored one plus what changed, where the store has one
    stored_scripts = stored.manifest["counts"].get("non_latin_units")
    merged = joined | "MergeWithStore" >> rf.MergeWithStore(script_changes=stored_scripts is not None)

    # Fresh units: counted, embedded, assigned to the frozen hyperwords.
    # auto is resolved here, once: every worker then runs what the manifest records, whatever its CPU.
    handler = SentenceTransformerModelHandler(embedder_folder, embedder=cfg.embedder, device=cfg.device, batch_size=cfg.batch_size,
                                              precision=torch_dtype(cfg.device, cfg.embedder, cfg.precision))
    frozen = p | "Hyperwords" >> beam.Create([centroids])

    def embed():
        # known and candidate units are few beside the fresh ones: their vectors stay in memory (the
        # scenes stage names a long document's spilled rows after the bucket's vector file name,
        # which the fresh units' files of the same bucket number hold)
        return Embed(handler)

    fresh = (
        merged.fresh
        | "CountTokens" >> CountTokens(model_folder, static_folder=embedder_folder if cfg.embedder == "static" else None)
        | "Embed" >> Embed(handler, spill_to=FileSystems.join(scratch, "vectors"))
        | "Assign" >> beam.Map(rf.assign_frozen, centroids=beam.pvalue.AsSingleton(frozen))
    )
    # Known units are embedded again from their text, as compress would: the new documents' scenes
    # do not rest on the store's quantized vectors.
    known = merged.known | "EmbedKnown" >> embed()

    levels = (fresh, known) | "NewDocumentUnits" >> beam.Flatten() | "BuildLevels" >> BuildLevels(
        scene_cfg, frozen=p | "LevelCodebooks" >> beam.Create(level_books), spill=spill, groups=group_count(n))

    quantizer = stored.quantizer()
    matched, candidate_stats = _matched_fresh_units(cfg, stored, quantizer, fresh, _stored_vectors(p, stored, fresh, joined["members"]),
                                                    joined["stored"], embed, n)

    # The new version's tables: documents and the codebooks' statistics written whole; of the shared
    # tables (SHARED_TABLES), only the new rows.
    fresh_rows = fresh | "FreshRows" >> beam.Map(rf.fresh_unit_rows)
    units = (merged.units, fresh_rows) | "Units" >> beam.Flatten()  # every unit, for the statistics
    hw_stats = units | "HyperwordMembers" >> beam.FlatMap(rf.hyperword_members) | "HyperwordStats" >> beam.CombinePerKey(rf.HyperwordStats())
    # every scene of the new version, for the level codebooks' statistics and the counts
    scenes = (job.read_stored(p, "scenes", stored, "scenes", columns=["doc_id", "level", "code", "code_score", "scene_id", "token_count"],
                              keep_docs_not_in=plan.removed), levels["scenes"]) | "Scenes" >> beam.Flatten()
    code_stats = scenes | "SceneMembers" >> beam.FlatMap(rf.scene_members) | "CodeStats" >> beam.CombinePerKey(CodeStats())
    documents = (
        job.read_stored(p, "documents", stored, "documents") | "UpdateDocuments" >> beam.Map(rf.update_documents, plan=plan),
        new_documents,
    ) | "Documents" >> beam.Flatten()
    tables = {
        "documents": documents,
        "units": (merged.changed, fresh_rows) | "NewUnitRows" >> beam.Flatten(),
        "occurrences": levels["occurrences"],
        "hyperwords": frozen | "HyperwordRows" >> beam.FlatMap(rf.hyperword_rows, stats=beam.pvalue.AsDict(hw_stats)),
        "provenance": matched.provenance,
        "dead_letters": p | "NewDeadLetters" >> beam.Create(new_dead),
        "scenes": levels["scenes"],
        "codebooks": p | "LevelCodebookRows" >> beam.Create(level_books)
        | "CodebookRows" >> beam.FlatMapTuple(codebook_rows, stats=beam.pvalue.AsDict(code_stats)),
    }
    if not stored.files("centroids"):  # written before format 6: the frozen centroids, once, in their own table
        tables["centroids"] = (tables["hyperwords"], tables["codebooks"]) | "CodebookCentroids" >> beam.Flatten() \
            | "CentroidRows" >> beam.Map(centroid_row)
    written = [rows | f"Write {name}" >> WriteTable(name, path, cfg.num_shards if name in SHARDED_TABLES else 1)
               for name, rows in tables.items() if name not in PER_DOCUMENT_TABLES]
    # this version's own revisions only: the rows of the others are in the shared files
    written += [tables[name] | f"Write {name}" >> WriteTable(name, path, cfg.num_shards)
                | f"Range {name}" >> beam.Map(lambda entry: {**entry, "documents": [version, version]}) for name in PER_DOCUMENT_TABLES]
    written.append(fresh | "Write vectors" >> beam.Map(write_vector_file, version_path=path, version=version, encoding=cfg.vectors,
                                                       quantizer=quantizer))
    written.append(p | "SharedVectors" >> beam.Create(shared))
    files_written = written | "AllFiles" >> beam.Flatten()

    stats = [
        tables["documents"] | "DocStats" >> beam.FlatMap(rf.document_stats),
        merged.units | "StoredUnitStats" >> beam.FlatMap(rf.unit_stats, scripts=stored_scripts is None),
        fresh_rows | "FreshUnitStats" >> beam.FlatMap(rf.unit_stats),
        tables["provenance"] | "NMerges" >> _count("near_duplicate_units"),
        merged.stats,
        matched.stats,
        candidate_stats,
        tables["dead_letters"] | "NDead" >> _count("dead_letters"),
        scenes | "LevelStats" >> beam.FlatMap(level_stats),
        fresh | "FreshStats" >> beam.FlatMap(rf.fresh_stats),
        known | "KnownStats" >> beam.FlatMap(rf.known_stats),
        p | "FixedStats" >> beam.Create([("codebook_size", len(centroids)), ("fresh_units", 0), ("known_units", 0),
                                          ("near_duplicate_occurrences", 0),
                                          # the rows of the shared provenance and dead letters files
                                          ("near_duplicate_units", stored.manifest["counts"].get("near_duplicate_units", 0)),
                                          ("dead_letters", stored.manifest["counts"].get("dead_letters", 0)),
                                          ("non_latin_units", stored_scripts or 0)]
                                         + [(f"level_{level}_codebook_size", len(c)) for level, c in level_books]),
    ] | "AllStats" >> beam.Flatten()
    return (files_written, stats) | "Publish" >> PublishVersion(path, info)


def retrain_owed(manifest: dict, threshold: float | None) -> str | None:
    """The reason to retrain now, when the latest version is a refresh whose drift passed the threshold."""
    drift = (manifest.get("refresh") or {}).get("drift") or {}
    if threshold is None or drift.get("ratio") is None or drift["ratio"] <= threshold:
        return None
    return f"drift ratio {drift['ratio']} > {threshold} in version {manifest['version']}"


def run(argv: list[str]) -> dict:
    """Refresh; returns the new version's manifest plus ``stages``, or, when nothing changed,
    ``{"version": the latest, "changed": False, "refresh": counts}``."""
    started = time.time()
    args, beam_args = parse(argv)
    heap.return_freed_memory()
    with job.locked(args.store, "refresh"):
        stored = job.base_version(args.store, "refresh")
        cfg = store_config(stored, args, beam_args)
        files = discover(list(cfg.inputs), cfg.input_format, exclude=(cfg.out,))
        incoming, dead = scan_input(files, cfg.text_field, cfg.id_field)
        stored_docs = stored.read("documents", ["doc_id", "sha256", "revision", "deleted", "source", "format"]).to_pylist()
        stored_dead = [(d["source"], d["record"], d["reason"]) for d in stored.read("dead_letters", ["source", "record", "reason"]).to_pylist()]
        plan = rf.plan_refresh(stored_docs, {d: c["sha256"] for d, c in incoming.items()}.items(), args.delete_missing,
                               stored_dead, [(d["source"], d["record"], d["reason"]) for d in dead])
        check_distinct_sources(files, {(d["format"], d["source"]) for d in stored_docs
                                       if not d["deleted"] and d["doc_id"] not in plan.deleted},
                               hint=" (a stored document that is no longer in the input stays unless --delete-missing)")
        logger.info("refresh of %s (version %d): %s", args.store, stored.version,
                    ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in plan.as_dict().items()))
        if plan.empty:
            owed = retrain_owed(stored.manifest, args.retrain_if_drift)
            if owed:  # the refresh that drifted was published, its retrain was cut short: do it now
                from hyperscene.pipelines.retrain import retrain

                retrained = retrain(args.store, beam_args, owed)
                return {**retrained, "changed": True, "refreshed_version": stored.version}
            logger.info("nothing changed: the store stays at version %d", stored.version)
            return {"version": stored.version, "changed": False, "refresh": plan.as_dict()}
        known_dead = set(stored_dead)
        new_dead = [d for d in dead if (d["source"], d["record"], d["reason"]) not in known_dead]

        load_spacy(cfg.lang, cfg.spacy_model)
        model = job.load_model(cfg)
        identity = model.identity
        if identity.fingerprint != stored.manifest["model"].get("fingerprint"):
            raise StoreError(Errors.E408.format(model=cfg.model, found=identity.fingerprint[:12],
                                                stored=stored.manifest["model"].get("fingerprint", "?")[:12]))

        version = stored.version + 1
        paths = {c["path"] for d, c in incoming.items() if d in plan.process}
        to_read = [f for f in files if f.path in paths]
        process_bytes = sum(c["bytes"] for d, c in incoming.items() if d in plan.process)
        info = ManifestInfo(
            config={**stored.manifest["config"], **{k: v for k, v in cfg.as_manifest().items()
                                                    if k in ("inputs", "out", "input_format", "text_field", "id_field", "vectors")}},
            model={**stored.manifest["model"], "precision": identity.precision}, started_at=started, version=version,
            sections={"codebook": stored.manifest.get("codebook", {}),
                      "refresh": {"from_version": stored.version, **plan.as_dict(), "drift": None}},
            complete=rf.complete_sections,
        )

        def build(p, path, scratch):
            build_pipeline(p, cfg, stored, plan, to_read, new_dead, model.folder, model.embedder_folder,
                           info, path, scratch, job.shared_files(stored, SHARED_TABLES), process_bytes)

        # The new version shares the stored vector files, rewrites the other tables and adds what this run writes.
        needed = job.written_bytes(stored, SHARED_TABLES) + job.disk_needed(process_bytes, identity.dimension)
        manifest, stages = job.write_version(args.store, version, build, cfg.beam_args, needed)
        drift = manifest["refresh"]["drift"]
        logger.info("version %d published: %s; drift: fresh units sit %s from their hyperwords against %s when the codebook "
                    "was trained (ratio %s)", version, ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in plan.as_dict().items() if v),
                    drift["fresh_mean_distance"], drift["baseline_mean_distance"],
                    "not measured" if drift["ratio"] is None else drift["ratio"])
        warning = rf.drift_warning(manifest)
        if warning:
            logger.warning(warning)
        if retrain_owed(manifest, args.retrain_if_drift):
            from hyperscene.pipelines.retrain import retrain

            retrained = retrain(args.store, beam_args, retrain_owed(manifest, args.retrain_if_drift))
            return {**retrained, "changed": True, "refreshed_version": version, "stages": {**stages, **retrained["stages"]}}
    return {**manifest, "changed": True, "stages": stages}


def print_result(result: dict) -> None:
    if not result.get("changed"):
        print(f"nothing changed: {result['refresh']['unchanged_documents']:,} documents as stored; "
              f"the store stays at version {result['version']}")
    else:
        job.print_summary(result)
