#!/usr/bin/env bash
# The one prepared script for a lent GPU (issues 31 and 36), at most 8 minutes:
#   1. the paper model (p 97, width 128, 2 blocks) as an ensemble of 32 against a loop of
#      single runs, 100 steps each, one repeat (target: >= 10x; sweep_speed.py);
#   2. the bridge's slice at the paper's size (bridge.py --size p97: 16 runs of 4000 steps,
#      one ensemble), recorded as data/corpus/grok_p97/<hash>.parquet.
# Each part has its own time limit, so a slow first part cannot starve the second. The
# output and the records go to $OUT (the device tool brings them back) and, for the records,
# into the working tree.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine (cuda)
#   SMOKE=1 bash benchmarks/gpu_check.sh      # a few steps on the CPU: checks the script runs
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PY:-.venv/bin/python}"
export GROKBOOK_HOME="${GROKBOOK_HOME:-$OUT/store}"
if [ -n "${SMOKE:-}" ]; then
    export GROKBOOK_DEVICE=cpu
    speed=(--sweep paper --models 2 --steps 3 --repeats 1)
    bridge=(--size p97 --ensemble 16 --limit 2 --steps 20 --out "$OUT/grok_p97")
    limits=(120 300)
else
    export GROKBOOK_DEVICE=cuda
    speed=(--sweep paper --models 32 --steps 100 --repeats 1 --device cuda)
    bridge=(--size p97 --ensemble 16 --out data/corpus/grok_p97)
    limits=(150 330)
fi
{
    echo "gpu_check $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/gpu_check.txt"
timeout "${limits[0]}" $PY benchmarks/sweep_speed.py "${speed[@]}" 2>&1 | tee -a "$OUT/gpu_check.txt"
echo "speed part: exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_check.txt"
timeout "${limits[1]}" $PY benchmarks/bridge.py "${bridge[@]}" 2>&1 | tee -a "$OUT/gpu_check.txt"
echo "bridge part: exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_check.txt"
if [ -z "${SMOKE:-}" ] && [ -d data/corpus/grok_p97 ]; then
    mkdir -p "$OUT/grok_p97" && cp data/corpus/grok_p97/*.parquet "$OUT/grok_p97/" 2>/dev/null
fi
exit 0
