"""Parquet schemas of the store's tables.

A store is a directory of versions; each version holds one folder per table with Parquet files of
the schema below, and a ``manifest.json`` that is written last. Readers rely on these names and
types, so a change here is a format change: bump ``FORMAT_VERSION`` and say so in the README.

Reassembly rule (the byte-exact guarantee): a document's text is its ``prefix`` followed, for every
occurrence in ``position`` order, by the unit's ``text`` and the occurrence's ``separator``.
"""

import pyarrow as pa

# 2: scenes, codebooks, occurrences.semantic_id
# 3: documents.revision/added_in_version/deleted, the vectors table (refresh)
# 4: a manifest's file entry may name the earlier version whose folder holds the file ("version"):
#    versions share files instead of copying them; "table_bytes"; counts.written_bytes; vectors in
#    int8 (VECTORS_INT8) or none (config.vectors); centroids in float16 (codebooks are trained to
#    float16 values, so the stored codebook is the one that assigned the codes)
# 5: unit ids are int64 (transforms/unit_ids.py), not 32 hex digits; files of earlier formats are
#    read with their hex ids converted (unit_ids.upgrade_ids); scenes keep no centroid (retrain
#    computes them again from the vectors; an earlier file's centroid column is not read);
#    units.hyperword_score and scenes.code_score are float16; occurrences.hyperword is not stored
#    (DERIVED_COLUMNS); unit ids and positions sorted in a file are delta-encoded
# 6: vectors as product-quantization codes (VECTORS_PQ, the default) with their codebook in the
#    quantizer table; the centroids of hyperwords and scene codebooks in the centroids table, which a
#    refresh shares, and not in hyperwords and codebooks, whose statistics it rewrites (readers give
#    them a centroid column from it; files of earlier formats hold theirs: HYPERWORDS_WITH_CENTROID)
FORMAT_VERSION = 6

# The first format that keeps vectors: refresh and retrain build on a store of this format or later.
VECTORS_SINCE = 3

DOCUMENTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # input file, relative to its input root
        pa.field("format", pa.string(), nullable=False),  # text | jsonl | parquet
        pa.field("record", pa.int64()),  # line (jsonl) or row (parquet) within source; null for text
        pa.field("bytes", pa.int64(), nullable=False),  # UTF-8 bytes of the original text
        pa.field("sha256", pa.string(), nullable=False),  # of those bytes
        pa.field("prefix", pa.string(), nullable=False),  # whitespace before the first unit
        pa.field("unit_count", pa.int64(), nullable=False),
        pa.field("metadata", pa.string()),  # JSONL/Parquet: the record's other fields, as JSON
        pa.field("revision", pa.int32(), nullable=False),  # 1, then +1 each time a refresh sees new content
        pa.field("added_in_version", pa.int32(), nullable=False),  # the store version that wrote this revision
        # Absent from a refresh's input with --delete-missing: the row stays (with its last revision's
        # bytes and sha256), its occurrences and scenes do not; earlier versions still hold them.
        pa.field("deleted", pa.bool_(), nullable=False),
    ]
)

UNITS = pa.schema(
    [
        pa.field("unit_id", pa.int64(), nullable=False),  # hash of the text (transforms/unit_ids.py)
        pa.field("text", pa.string(), nullable=False),
        pa.field("occurrence_count", pa.int64(), nullable=False),
        pa.field("token_count", pa.int64(), nullable=False),  # embedding model's tokenizer, no specials
        pa.field("word_count", pa.int64(), nullable=False),  # whitespace-separated words
        pa.field("hyperword", pa.int32(), nullable=False),
        pa.field("hyperword_score", pa.float16(), nullable=False),  # cosine to the centroid, rounded to float16
    ]
)

OCCURRENCES = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),  # 0-based, within the document
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("separator", pa.string(), nullable=False),  # whitespace after the unit, maybe ""
        # codes from the document's root scene down to the unit's level-1 scene, then its hyperword
        pa.field("semantic_id", pa.list_(pa.int32()), nullable=False),
    ]
)

# Columns readers give that the files do not hold (format 5 on), each computed from a stored one:
# an occurrence's hyperword is the last code of its semantic id (and its unit's hyperword).
DERIVED_COLUMNS = {"occurrences": {"hyperword": ("semantic_id", pa.int32())}}

HYPERWORDS = pa.schema(
    [
        pa.field("hyperword", pa.int32(), nullable=False),  # its centroid: centroids, level 0
        pa.field("unit_count", pa.int64(), nullable=False),  # distinct unit texts assigned
        pa.field("occurrence_count", pa.int64(), nullable=False),
        pa.field("representative_unit_id", pa.int64()),  # null for an empty cluster
        pa.field("representative_text", pa.string()),
        pa.field("representative_score", pa.float32()),
    ]
)

# A unit absent from provenance is its own canonical unit.
PROVENANCE = pa.schema(
    [
        pa.field("unit_id", pa.int64(), nullable=False),  # the merged member
        pa.field("canonical_unit_id", pa.int64(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("hyperword", pa.int32(), nullable=False),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("record", pa.int64()),  # line or row within source; null for a whole file
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.binary()),  # the bytes that were not stored anywhere else
    ]
)

# Scenes of every level >= 1 (level 0 is the units), one shape for all: see transforms/scenes/.
SCENES = pa.schema(
    [
        pa.field("scene_id", pa.string(), nullable=False),  # "<doc_id>#<level>.<index>"
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),  # in document order within its level
        pa.field("parent_scene_id", pa.string()),  # null for the document's root
        pa.field("first_position", pa.int64(), nullable=False),  # span: unit positions, inclusive
        pa.field("last_position", pa.int64(), nullable=False),
        pa.field("child_count", pa.int32(), nullable=False),
        pa.field("token_count", pa.int64(), nullable=False),
        pa.field("code", pa.int32(), nullable=False),  # in this level's codebook
        pa.field("code_score", pa.float16(), nullable=False),  # cosine to that code's centroid, rounded to float16
        pa.field("gist", pa.list_(pa.int64()), nullable=False),  # positions of its most central units
        pa.field("child_codes", pa.list_(pa.int32()), nullable=False),  # hyperwords at level 1
    ]
)

# The codebook of each scene level (level 0's is the hyperwords table).
CODEBOOKS = pa.schema(
    [
        pa.field("level", pa.int32(), nullable=False),
        pa.field("code", pa.int32(), nullable=False),  # its centroid: centroids, same level and code
        pa.field("scene_count", pa.int64(), nullable=False),
        pa.field("representative_scene_id", pa.string()),  # the member nearest the centroid; null if none
        pa.field("representative_score", pa.float32()),
    ]
)

# Every codebook's centroids: the hyperwords' at level 0 (code = hyperword), each scene level's
# above. Written by compress and retrain, which train codebooks, and shared by every refresh, which
# keeps them frozen.
CENTROIDS = pa.schema(
    [
        pa.field("level", pa.int32(), nullable=False),
        pa.field("code", pa.int32(), nullable=False),
        pa.field("centroid", pa.list_(pa.float16()), nullable=False),  # unit length, as the codebook was used
    ]
)

# hyperwords and codebooks as formats 2 to 5 wrote them, each row with its centroid.
CENTROID_FIELD = pa.field("centroid", pa.list_(pa.float16()), nullable=False)
HYPERWORDS_WITH_CENTROID = HYPERWORDS.insert(1, CENTROID_FIELD)
CODEBOOKS_WITH_CENTROID = CODEBOOKS.insert(2, CENTROID_FIELD)
# The tables readers give a centroid column, and the columns it is joined on (level 0 for hyperwords).
CENTROID_KEYS = {"hyperwords": ("hyperword",), "codebooks": ("level", "code")}

# Every distinct unit's embedding, kept so that a refresh embeds only new units and can compare them
# with the stored ones; with --vectors float16 in this schema, with int8 in VECTORS_INT8's.
VECTORS = pa.schema(
    [
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("hyperword", pa.int32(), nullable=False),  # as in units (a retrain rewrites both)
        pa.field("vector", pa.list_(pa.float16()), nullable=False),  # unit length, model dimension
    ]
)

# The same with --vectors int8: each vector scaled so that its largest component is ±127, and
# rounded (transforms/store/vector_codec.py). The codes are bytes, one a dimension: Parquet has no
# 8-bit numbers, and a list of int8 takes 1.5 bytes a dimension on disk where bytes take 1.
VECTORS_INT8 = pa.schema(
    [
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("hyperword", pa.int32(), nullable=False),
        pa.field("vector", pa.binary(), nullable=False),  # int8 codes: numpy.frombuffer(vector, "int8") * scale
        pa.field("scale", pa.float32(), nullable=False),
    ]
)

# The same with --vectors pq (product quantization, transforms/store/vector_codec.py): the vector
# cut into subspaces of a few dimensions, each stored as the index (one byte) of the nearest of the
# quantizer table's centroids for that subspace. ``error_angle`` bounds how far the decoded vector
# lies from the embedded one, so that a refresh knows which stored units could be near-duplicates
# of a new one and embeds exactly those again from their text (transforms/refresh/candidates.py).
VECTORS_PQ = pa.schema(
    [
        pa.field("unit_id", pa.int64(), nullable=False),
        pa.field("hyperword", pa.int32(), nullable=False),
        pa.field("code", pa.binary(), nullable=False),  # one byte a subspace: quantizer centroid indices
        # radians between the embedded vector and the decoded code, rounded up to float16
        pa.field("error_angle", pa.float16(), nullable=False),
    ]
)

# The codebook of --vectors pq, trained once by compress on a sample of the vectors and kept by
# every later version: centroid ``code`` of ``subspace`` (dimensions subspace * width onwards), in
# float16 as the vectors were coded with it.
QUANTIZER = pa.schema(
    [
        pa.field("subspace", pa.int16(), nullable=False),
        pa.field("code", pa.int16(), nullable=False),
        pa.field("centroid", pa.list_(pa.float16()), nullable=False),
    ]
)

# The columns that hold unit ids (int64 from format 5 on, hex strings before).
UNIT_ID_COLUMNS = {
    "units": ("unit_id",),
    "occurrences": ("unit_id",),
    "provenance": ("unit_id", "canonical_unit_id"),
    "hyperwords": ("representative_unit_id",),
    "vectors": ("unit_id",),
}

VECTOR_SCHEMAS = {"float16": VECTORS, "int8": VECTORS_INT8, "pq": VECTORS_PQ}

TABLES = {
    "documents": DOCUMENTS,
    "units": UNITS,
    "occurrences": OCCURRENCES,
    "hyperwords": HYPERWORDS,
    "provenance": PROVENANCE,
    "dead_letters": DEAD_LETTERS,
    "scenes": SCENES,
    "codebooks": CODEBOOKS,
    "vectors": VECTORS,
    "quantizer": QUANTIZER,
    "centroids": CENTROIDS,
}

def table_schema(name: str, columns) -> pa.Schema:
    """The schema of table ``name`` for rows with these columns: the vectors table has one per encoding."""
    if name == "vectors" and "scale" in columns:
        return VECTORS_INT8
    if name == "vectors" and "code" in columns:
        return VECTORS_PQ
    if name == "hyperwords" and "centroid" in columns:
        return HYPERWORDS_WITH_CENTROID
    if name == "codebooks" and "centroid" in columns:
        return CODEBOOKS_WITH_CENTROID
    return TABLES[name]


def read_schema(name: str) -> pa.Schema:
    """The schema of table ``name`` as readers give it: the stored columns, then the derived ones
    (and a centroid for hyperwords and codebooks, from the centroids table)."""
    schema = TABLES[name]
    if name in CENTROID_KEYS:
        schema = schema.append(CENTROID_FIELD)
    for column, (_, type_) in DERIVED_COLUMNS.get(name, {}).items():
        schema = schema.append(pa.field(column, type_, nullable=False))
    return schema


# Tables written in --num-shards files (each file one shard, by a hash of the first sort key); the
# others are written in one file, and vectors in one file per bucket.
SHARDED_TABLES = frozenset({"units", "occurrences", "scenes"})

# Rows are written sorted by these columns so that the same input gives the same files anywhere.
SORT_KEYS = {
    "documents": ("doc_id",),
    "units": ("unit_id",),
    "occurrences": ("doc_id", "position"),
    "hyperwords": ("hyperword",),
    "provenance": ("unit_id",),
    "dead_letters": ("source", "record", "reason"),
    "scenes": ("doc_id", "level", "index"),
    "codebooks": ("level", "code"),
    "vectors": ("unit_id",),
    "quantizer": ("subspace", "code"),
    "centroids": ("level", "code"),
}
