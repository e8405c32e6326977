"""How the ``vectors`` table holds each unit's embedding: ``--vectors float16|int8|none``.

- ``float16``: half precision, 2 bytes a dimension.
- ``int8``: scalar quantization, 1 byte a dimension and a float32 scale a vector. Each vector is scaled
  so that its largest component is ±127 and rounded; reading multiplies back and renormalises. The
  effect on near-duplicate decisions is measured by benchmarks/vector_precision.py (README, "Vectors").
- ``none``: no vectors table rows at all; the store cannot be refreshed or retrained.
"""

from __future__ import annotations

import numpy as np

from hyperscene.schemas import VECTOR_SCHEMAS

ENCODINGS = ("float16", "int8", "none")
DEFAULT_ENCODING = "int8"


def encode(vectors: np.ndarray, encoding: str) -> dict[str, np.ndarray]:
    """The ``vector`` column's values (and ``scale`` for int8) for a float matrix of unit vectors."""
    if encoding == "float16":
        return {"vector": vectors.astype(np.float16)}
    if encoding == "int8":
        vectors = np.asarray(vectors, dtype=np.float32)
        peak = np.abs(vectors).max(axis=1, initial=0.0)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        return {"vector": codes, "scale": scale}
    raise ValueError(f"no vectors are stored with encoding {encoding!r}")


def vector_table(unit_ids, hyperwords, vectors: np.ndarray, encoding: str) -> "pa.Table":
    """Rows of the ``vectors`` table in ``encoding``."""
    import pyarrow as pa

    columns = encode(vectors, encoding)
    values = columns["vector"]
    offsets = pa.array(np.arange(0, values.size + 1, max(values.shape[1], 1), dtype=np.int32))
    if "scale" in columns:  # int8: each row's codes as bytes
        vector = pa.BinaryArray.from_buffers(pa.binary(), len(values), [None, offsets.buffers()[1], pa.py_buffer(values.tobytes())])
        arrays = [unit_ids, hyperwords, vector, pa.array(columns["scale"])]
    else:
        arrays = [unit_ids, hyperwords, pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))]
    return pa.Table.from_arrays(arrays, schema=VECTOR_SCHEMAS[encoding])


def decode(table) -> np.ndarray:
    """The vectors of a ``vectors`` table (either encoding) as a float32 matrix of unit vectors."""
    column = table.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if "scale" not in table.column_names:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float32)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    codes = np.frombuffer(column.buffers()[2], dtype=np.int8)[offsets[0]:offsets[-1]]
    values = codes.reshape(len(column), -1).astype(np.float32)
    values *= table.column("scale").to_numpy()[:, None]
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, 1.0)
