"""How the ``vectors`` table holds each unit's embedding: ``--vectors pq|int8|float16|none``.

- ``pq`` (the default): product quantization, one byte per 4 dimensions (96 bytes for MiniLM's 384).
  The vector is cut into subspaces of 4 dimensions; each is stored as the index of the nearest of
  256 centroids trained for that subspace (the ``quantizer`` table). Each row also keeps the angle
  between the embedded vector and its decoded code (``error_angle``), rounded up.
- ``int8``: scalar quantization, 1 byte a dimension and a float32 scale a vector. Each vector is scaled
  so that its largest component is ±127 and rounded; reading multiplies back and renormalises.
- ``float16``: half precision, 2 bytes a dimension.
- ``none``: no vectors table rows at all; the store cannot be refreshed or retrained.

Every encoding bounds its error as an angle (:func:`error_angles`). A refresh decides near-duplicates
on vectors embedded from text, never on decoded ones: the decoded vectors only choose which stored
units to embed again, and the bound makes that choice miss none (transforms/refresh/candidates.py).
The store's bytes per encoding are measured by benchmarks/store_bytes.py (README, "Vectors").
"""

from __future__ import annotations

import numpy as np

from hyperscene.schemas import VECTOR_SCHEMAS
from hyperscene.transforms.faiss_loader import load_faiss

ENCODINGS = ("pq", "int8", "float16", "none")
DEFAULT_ENCODING = "pq"

# pq: dimensions a code byte stands for, and centroids a subspace (one byte's worth).
PQ_DIMENSIONS_PER_BYTE = 4
PQ_CENTROIDS = 256
PQ_ITERATIONS = 10
# Training points a subspace's k-means uses: FAISS samples down to 256 a centroid anyway.
PQ_SAMPLE = PQ_CENTROIDS * 256
# float16 rounds each component to within 2^-11 of its value: the angle that moves a unit vector.
FLOAT16_ANGLE = 2.0 ** -11


def pq_subspaces(dimension: int, dimensions_per_byte: int = PQ_DIMENSIONS_PER_BYTE) -> int:
    """Subspaces of a pq code for vectors of ``dimension``: dimension / 4, or the nearest count
    below it that divides the dimension evenly."""
    m = max(1, dimension // dimensions_per_byte)
    while dimension % m:
        m -= 1
    return m


def train_quantizer(sample: np.ndarray, seed: int, dimensions_per_byte: int = PQ_DIMENSIONS_PER_BYTE,
                    iterations: int = PQ_ITERATIONS) -> np.ndarray:
    """pq centroids, shape (subspaces, 256, width), trained by k-means on each subspace of ``sample``
    (unit vectors, rows in a fixed order), rounded to the float16 values the store keeps. With fewer
    than 256 rows, each subspace's centroids are the rows themselves (repeated to fill 256).
    Other ``dimensions_per_byte`` and ``iterations`` are for benchmarks/vector_candidates.py."""
    faiss = load_faiss()

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    n, d = sample.shape
    m = pq_subspaces(d, dimensions_per_byte)
    width = d // m
    parts = sample.reshape(n, m, width)
    if n < PQ_CENTROIDS:
        rows = np.arange(PQ_CENTROIDS) % max(n, 1)
        centroids = parts[rows].transpose(1, 0, 2) if n else np.zeros((m, PQ_CENTROIDS, width), np.float32)
        return _as_stored(centroids)
    pq = faiss.ProductQuantizer(d, m, 8)
    pq.cp.niter, pq.cp.seed = iterations, seed
    pq.cp.min_points_per_centroid = 1  # a small store's sample is what it is: no warning for it
    pq.train(sample[:PQ_SAMPLE])
    return _as_stored(faiss.vector_to_array(pq.centroids).reshape(m, PQ_CENTROIDS, width))


def _as_stored(centroids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(centroids, dtype=np.float32).astype(np.float16).astype(np.float32)


def quantizer_rows(centroids: np.ndarray):
    """The ``quantizer`` table's rows for pq centroids."""
    for s, subspace in enumerate(centroids):
        for c, centroid in enumerate(subspace):
            yield {"subspace": s, "code": c, "centroid": centroid.tolist()}


def quantizer_from_table(table) -> np.ndarray:
    """pq centroids from the ``quantizer`` table's rows (any order)."""
    table = table.sort_by([("subspace", "ascending"), ("code", "ascending")])
    m = len(set(table.column("subspace").to_pylist()))
    flat = table.column("centroid").combine_chunks()
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(m, PQ_CENTROIDS, -1)


def pq_codes(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid (Euclidean) in every subspace: uint8, shape (n, subspaces)."""
    faiss = load_faiss()

    m, k, width = centroids.shape
    pq = faiss.ProductQuantizer(m * width, m, 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(centroids, dtype=np.float32).ravel(), pq.centroids)
    return pq.compute_codes(np.ascontiguousarray(vectors, dtype=np.float32))


def pq_decode(codes: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Unit vectors from pq codes: the chosen centroids side by side, renormalised."""
    m, k, width = centroids.shape
    # one flat take of rows of the (m * k, width) table: several times faster than 2-d fancy indexing
    rows = codes.astype(np.intp) + np.arange(m, dtype=np.intp) * k
    values = np.take(centroids.reshape(m * k, width), rows, axis=0).reshape(len(codes), m * width)
    return _unit(values)


def _unit(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, 1.0)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Radians between the rows of ``a`` and ``b`` (unit vectors), as 2 asin(|a - b| / 2): exact
    near zero, where arccos of a rounded cosine is not."""
    chord = np.linalg.norm(_unit(np.asarray(a, np.float64)) - np.asarray(b, np.float64), axis=1)
    return (2 * np.arcsin(np.minimum(chord / 2, 1.0))).astype(np.float32)


def angle_up(angles: np.ndarray) -> np.ndarray:
    """Angles in float16, each rounded up so that the stored bound still holds."""
    half = angles.astype(np.float16)
    low = half.astype(np.float32) < angles
    half[low] = np.nextafter(half[low], np.float16(np.inf))
    return half


def encode(vectors: np.ndarray, encoding: str, quantizer: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ``vector`` column's values (and ``scale`` for int8), or pq's ``code`` and
    ``error_angle``, for a float matrix of unit vectors."""
    if encoding == "pq":
        if quantizer is None:
            raise ValueError("pq vectors need the store's quantizer")
        vectors = np.asarray(vectors, dtype=np.float32)
        codes = pq_codes(vectors, quantizer)
        return {"code": codes, "error_angle": angle_up(angle_between(vectors, pq_decode(codes, quantizer)))}
    if encoding == "float16":
        return {"vector": vectors.astype(np.float16)}
    if encoding == "int8":
        vectors = np.asarray(vectors, dtype=np.float32)
        peak = np.abs(vectors).max(axis=1, initial=0.0)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        return {"vector": codes, "scale": scale}
    raise ValueError(f"no vectors are stored with encoding {encoding!r}")


def _as_binary(values: np.ndarray):
    """Each row of a byte matrix as one binary value."""
    import pyarrow as pa

    offsets = pa.array(np.arange(0, values.size + 1, max(values.shape[1], 1), dtype=np.int32))
    return pa.BinaryArray.from_buffers(pa.binary(), len(values), [None, offsets.buffers()[1], pa.py_buffer(values.tobytes())])


def pq_code_matrix(table) -> np.ndarray:
    """The ``code`` column of a pq ``vectors`` table as a uint8 matrix, one row per unit."""
    column = table.column("code").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    return _binary_rows(column, np.uint8)


def _binary_rows(column, dtype) -> np.ndarray:
    """A binary column of equal-length values as a matrix of ``dtype``."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    values = np.frombuffer(column.buffers()[2], dtype=dtype)[offsets[0]:offsets[-1]]
    return values.reshape(len(column), -1)


def vector_table(unit_ids, hyperwords, vectors: np.ndarray, encoding: str, quantizer: np.ndarray | None = None) -> "pa.Table":
    """Rows of the ``vectors`` table in ``encoding`` (pq: with the store's ``quantizer``)."""
    import pyarrow as pa

    columns = encode(vectors, encoding, quantizer)
    if "code" in columns:
        arrays = [unit_ids, hyperwords, _as_binary(columns["code"]), pa.array(columns["error_angle"], pa.float16())]
        return pa.Table.from_arrays(arrays, schema=VECTOR_SCHEMAS[encoding])
    values = columns["vector"]
    offsets = pa.array(np.arange(0, values.size + 1, max(values.shape[1], 1), dtype=np.int32))
    if "scale" in columns:  # int8: each row's codes as bytes
        vector = pa.BinaryArray.from_buffers(pa.binary(), len(values), [None, offsets.buffers()[1], pa.py_buffer(values.tobytes())])
        arrays = [unit_ids, hyperwords, vector, pa.array(columns["scale"])]
    else:
        arrays = [unit_ids, hyperwords, pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))]
    return pa.Table.from_arrays(arrays, schema=VECTOR_SCHEMAS[encoding])


def decode(table, quantizer: np.ndarray | None = None) -> np.ndarray:
    """The vectors of a ``vectors`` table (any encoding; pq with the store's ``quantizer``) as a
    float32 matrix of unit vectors."""
    if "code" in table.column_names:
        if quantizer is None:
            raise ValueError("pq vectors need the store's quantizer table to be read")
        column = table.column("code").combine_chunks()
        if len(column) == 0:
            return np.zeros((0, quantizer.shape[0] * quantizer.shape[2]), dtype=np.float32)
        return pq_decode(_binary_rows(column, np.uint8), quantizer)
    column = table.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if "scale" not in table.column_names:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float32)
    values = _binary_rows(column, np.int8).astype(np.float32)
    values *= table.column("scale").to_numpy()[:, None]
    return _unit(values)


def error_angles(table) -> np.ndarray:
    """For each row of a ``vectors`` table, an upper bound in radians on the angle between the
    embedded vector and the decoded one. pq stores it. int8 rounds each component to within half
    a scale step, so the error is at most sqrt(d) * scale / 2 in length, and a unit vector moved by
    e at most asin(e). float16 moves each component by at most 2^-11 of itself."""
    if "error_angle" in table.column_names:
        return table.column("error_angle").to_numpy().astype(np.float32)
    if "scale" in table.column_names:
        column = table.column("vector").combine_chunks()
        width = _binary_rows(column, np.int8).shape[1] if len(column) else 0
        error = np.sqrt(width) * table.column("scale").to_numpy().astype(np.float64) / 2
        return np.arcsin(np.minimum(error, 1.0)).astype(np.float32)
    return np.full(table.num_rows, FLOAT16_ANGLE, np.float32)
