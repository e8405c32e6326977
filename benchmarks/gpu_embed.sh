#!/usr/bin/env bash
# The GPU embedding figures of the README, on a machine with a CUDA GPU, torch and
# sentence-transformers but not necessarily the rest of hyperscene's dependencies:
#
#   benchmarks/gpu_embed.sh MODEL_DIR UNITS_PARQUET STSB_DIR [REFERENCE_NPY]
#
# MODEL_DIR: the bundled MiniLM folder (its weights may be stored in float16: the GPU path casts
# them to float16 anyway). UNITS_PARQUET: distinct unit texts, as
# `python benchmarks/embed_floor.py STORE --save-texts FILE` writes them. REFERENCE_NPY: float32
# CPU vectors of texts spread over the file (`embed_floor.py FILE --limit 2000 --save-vectors ...`, float32 by default).
set -euo pipefail
model=$1 units=$2 stsb=$3 reference=${4:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
# hyperscene's folders are the subpackages of the namespace package hyperscene: link them.
shim=$(mktemp -d)
mkdir "$shim/hyperscene"
for d in pipelines transforms schemas; do ln -s "$repo/$d" "$shim/hyperscene/$d"; done
export PYTHONPATH=$shim${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, sentence_transformers as st, transformers as t; print('torch', torch.__version__, 'sentence-transformers', st.__version__, 'transformers', t.__version__)"
python3 "$repo/benchmarks/embed_floor.py" "$units" --model "$model" --device cuda \
    --batch-sizes 256,512,1024 --precisions float16,float32 ${reference:+--reference "$reference"}
for lang in en ru; do
    python3 "$repo/benchmarks/near_dup_threshold.py" --model "$model" --device cuda --lang "$lang" \
        --speed-against "" --stsb "$stsb" | tail -1
done
