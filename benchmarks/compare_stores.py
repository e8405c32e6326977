"""Whether two stores of the same corpus made the same decisions, compared by text (not by id, so
stores of different formats compare): every unit's hyperword, every near-duplicate merge (member
text, canonical text) and every occurrence's semantic id.

    python benchmarks/compare_stores.py STORE_A STORE_B
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def decisions(path: str):
    from hyperscene.transforms.store.reader import StoreVersion

    sv = StoreVersion(path)
    units = sv.read("units", ["unit_id", "text", "hyperword"])
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    hyperword_of = dict(zip(units["text"].to_pylist(), units["hyperword"].to_pylist()))
    provenance = sv.read("provenance", ["unit_id", "canonical_unit_id"])
    merges = {(text_of[m], text_of[c]) for m, c in zip(provenance["unit_id"].to_pylist(), provenance["canonical_unit_id"].to_pylist())}
    occurrences = sv.read("occurrences", ["doc_id", "position", "semantic_id"])
    semantic = dict(zip(zip(occurrences["doc_id"].to_pylist(), occurrences["position"].to_pylist()), occurrences["semantic_id"].to_pylist()))
    return sv.manifest["format_version"], hyperword_of, merges, semantic


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    fa, ha, ma, sa = decisions(args.a)
    fb, hb, mb, sb = decisions(args.b)
    same_hw = sum(hb.get(t) == hw for t, hw in ha.items())
    same_ids = sum(sb.get(k) == v for k, v in sa.items())
    print(f"formats {fa} and {fb}")
    print(f"units: {len(ha):,} and {len(hb):,}; same hyperword: {same_hw:,}")
    print(f"merges: {len(ma):,} and {len(mb):,}; the same (member, canonical) texts: {len(ma & mb):,}")
    print(f"occurrences: {len(sa):,} and {len(sb):,}; same semantic id: {same_ids:,}")
    same = same_hw == len(ha) == len(hb) and ma == mb and same_ids == len(sa) == len(sb)
    print("the same decisions" if same else "decisions differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
