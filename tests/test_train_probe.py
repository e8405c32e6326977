"""benchmarks/train_probe.py end to end in --quick mode: a tiny corpus with a repeated passage is
compressed, split, distilled, and a tiny model is trained on every variant with three seeds."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "sample-corpus"

_spec = importlib.util.spec_from_file_location("train_probe", REPO / "benchmarks" / "train_probe.py")
train_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_probe)


def test_quick_probe_runs_end_to_end(tmp_path):
    alice = (SAMPLE / "alice-in-wonderland.txt").read_text(encoding="utf-8")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # The export's hash rule at --test-fraction 0.25 holds out held.txt (0.22) and trains on
    # train-1.txt (0.94) and train-2.txt (0.33); train-2 repeats half of train-1, so distilling drops units.
    (corpus / "train-1.txt").write_text(alice[:20_000], encoding="utf-8")
    (corpus / "train-2.txt").write_text(alice[10_000:30_000], encoding="utf-8")
    (corpus / "held.txt").write_text((SAMPLE / "sign-of-the-four.md").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "probe.json"

    result = train_probe.main(["--corpus", str(corpus), "--quick", "--train-bytes", "30k", "--test-fraction", "0.25",
                               "--seeds", "1", "2", "3", "--out", str(out)])

    saved = json.loads(out.read_text())
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    data = saved["data"]
    assert data["held_out_documents"] == ["held.txt"]
    assert data["train_documents"] == ["train-1.txt", "train-2.txt"]
    assert data["train_bytes_distilled"] < data["train_bytes_raw"]  # the repeated half is dropped
    assert data["hyperword_stand_ins"] > 0
    assert saved["seeds"] == [1, 2, 3]
    assert set(saved["summary"]) == {"raw", "distilled", "hyperwords"}
    for variant, runs in saved["runs"].items():
        assert [r["seed"] for r in runs] == [1, 2, 3]
        assert len({r["tokens"] for r in runs}) == 1  # equal budgets
        for r in runs:
            assert math.isfinite(r["final_bpb"]) and 0 < r["final_bpb"] < 9
            assert math.isfinite(r["final_bpb_new_text"])
        s = saved["summary"][variant]
        assert math.isfinite(s["bpb_mean"]) and s["bpb_std"] >= 0
        assert len(s["tokens_to_raw_final"]) == 3
    assert len({s["tokens"] for s in saved["summary"].values()}) == 1
    # The raw model reaches its own final value at the end of its budget.
    assert saved["summary"]["raw"]["reached"] == "3/3"
