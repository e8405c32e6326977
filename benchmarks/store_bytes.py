"""Where a store version's bytes go: bytes per table (from its manifest), the store and the store
without vectors as multiples of the input, and the largest columns (from the Parquet footers).

    python benchmarks/store_bytes.py STORE [STORE ...] [--version N] [--columns 12] [--json]

The README's "Store size" table is made with it. A version counts every file its manifest lists,
its own and those it shares with earlier versions: that is what reading it needs.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(store: str, version: int | None, columns: int) -> dict:
    import pyarrow.parquet as pq

    from hyperscene.transforms.store.reader import StoreVersion

    sv = StoreVersion(store, version)
    tables = collections.Counter()
    by_column = collections.Counter()
    for entry in sv.entries():
        tables[entry["table"]] += entry["bytes"]
        metadata = pq.ParquetFile(io.BytesIO(sv.file_bytes(entry))).metadata
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                by_column[f"{entry['table']}.{column.path_in_schema.replace('.list.element', '')}"] += column.total_compressed_size
    input_bytes = sv.manifest["counts"]["input_bytes"]
    total = sum(tables.values())
    without = total - tables.get("vectors", 0) - tables.get("quantizer", 0)  # pq's codebook is part of the vectors
    return {
        "store": store, "version": sv.version, "input_bytes": input_bytes, "store_bytes": total,
        "store_ratio": round(total / input_bytes, 3), "without_vectors_bytes": without,
        "without_vectors_ratio": round(without / input_bytes, 3), "vectors": sv.manifest["config"].get("vectors", "float16"),
        "tables": dict(tables.most_common()), "largest_columns": dict(by_column.most_common(columns)),
        "files": len(sv.entries()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stores", nargs="+")
    p.add_argument("--version", type=int, help="a version of each store (default: its latest)")
    p.add_argument("--columns", type=int, default=12, help="how many of the largest columns to list (default: 12)")
    p.add_argument("--json", action="store_true", help="one JSON object per store")
    args = p.parse_args(argv)
    for store in args.stores:
        m = measure(store, args.version, args.columns)
        if args.json:
            print(json.dumps(m))
            continue
        print(f"{store} version {m['version']} (vectors {m['vectors']}): input {m['input_bytes']:,} B, "
              f"store {m['store_bytes']:,} B = {m['store_ratio']:.2f}x, without vectors {m['without_vectors_bytes']:,} B "
              f"= {m['without_vectors_ratio']:.2f}x")
        for table, size in m["tables"].items():
            print(f"  {table:14} {size:>14,}  {size / m['input_bytes']:6.3f}x")
        print("  largest columns:")
        for column, size in m["largest_columns"].items():
            print(f"  {column:34} {size:>14,}  {size / m['input_bytes']:6.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
