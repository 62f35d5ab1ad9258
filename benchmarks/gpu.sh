#!/usr/bin/env bash
# The GPU figures in one command: DropConnect training step / plain step, and Monte-Carlo time per chip
# against plain evaluation, for resnet18, resnet20 and mobilenetv2 at batch 128. About 3-5 minutes on
# one H100 (budget: under 8). Figures go to stdout and, when $OUT is set, to $OUT/gpu_benchmarks.txt.
#
#   bash benchmarks/gpu.sh                      # on the GPU
#   bash benchmarks/gpu.sh --device cpu --quick # check that the scripts run (a minute on a CPU)
#
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=()
while (($#)); do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    *) echo "usage: $0 [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
  esac
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out_file=/dev/null
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  out_file="$OUT/gpu_benchmarks.txt"
fi

{
  echo "== rramfx GPU benchmarks, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [[ "$device" == cuda* ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi
  echo "== DropConnect training step (SGD, 32x32 inputs, p = 0.2, 1x1 convs on RRAM), batch 128"
  "$PYTHON" benchmarks/dropconnect_step.py --device "$device" --batches 128 --rounds 30 \
    --models timm:resnet18,resnet20,timm:mobilenetv2_100 "${quick[@]}"
  echo "== Monte-Carlo: 20 chips at SA1 0.1, 10,000 images of 3x32x32, batch 128"
  "$PYTHON" benchmarks/monte_carlo.py --device "$device" --batch 128 --samples 10000 --trials 20 --rounds 3 \
    --models tv:resnet18,resnet20,timm:mobilenetv2_100 "${quick[@]}"
} 2>&1 | tee "$out_file"
