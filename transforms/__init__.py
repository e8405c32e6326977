"""One stage per module: plain logic on batches, plus a thin Beam PTransform around it."""
