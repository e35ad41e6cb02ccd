#!/usr/bin/env bash
# GPU figures, in one go, on a machine with a CUDA GPU and ray_ncut's dependencies:
#   1. the GPU tests (tests/test_gpu.py: CUDA training/labelling, both Ray jobs on the GPU);
#   2. an MNIST8M-sized synthetic corpus (8M x 500, 10 clusters) end to end through the two
#      jobs a user runs (jobs/train.py, then jobs/assign.py --label-column label);
#   3. the same corpus through the in-memory estimator (bench/gpu_figures.py);
#   4. a part of the suite (bench/suite.py) with whatever time is left.
#
#   bash bench/gpu_suite.sh [OUT_DIR]       # writes OUT_DIR/gpu.txt and the jobs' JSON
set -uo pipefail
out=${1:-bench/results/gpu}
mkdir -p "$out"
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} PYTHONUNBUFFERED=1
report="$out/gpu.txt"
py=${PYTHON:-python3}
now() { date +%s.%N; }
log() { echo "$*" | tee -a "$report"; }

log "date $(date -u +%Y-%m-%d) card $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
log "$($py -c 'import torch, os; print("torch", torch.__version__, "cuda", torch.version.cuda, "cpus", os.cpu_count())')"
$py -m pytest -q -rs tests/test_gpu.py 2>&1 | tail -6 | tee -a "$report"

data="builtin:blobs?n=${ROWS:-8000000}&d=500&k=10&std=4.0"
work=$(mktemp -d)
t0=$(now)
$py jobs/train.py --data "$data" --out "$work/run" > "$out/train.log" 2>&1 || log "train job failed"
t1=$(now)
$py jobs/assign.py --model "$work/run" --out "$work/labels" --label-column label > "$out/assign.log" 2>&1 || log "assign job failed"
t2=$(now)
cp "$work/run/summary.json" "$out/train_summary.json" 2>/dev/null
cp "$work/labels/metrics.json" "$out/assign_metrics.json" 2>/dev/null
log "$($py -c "print(f'8M x 500 jobs end to end: train job {$t1 - $t0:.1f} s + assign job {$t2 - $t1:.1f} s = {$t2 - $t0:.1f} s')")"
tail -n 2 "$out/train.log" "$out/assign.log" | tee -a "$report"
rm -rf "$work"

$py bench/gpu_figures.py 2>&1 | tail -1 | tee -a "$report"
timeout "${SUITE_SECONDS:-150}" $py bench/suite.py --sets rings-10m,blobs-2m --systems ray_ncut,faiss-kmeans \
    --out "$out/suite.json" 2>&1 | grep -v "^\s*$" | tail -12 | tee -a "$report"
