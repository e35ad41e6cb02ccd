#!/usr/bin/env bash
# One scheduled recluster of a growing data set: run by deploy/kuberay/raycronjob-recluster.yaml
# (inside the RayJob it creates) and by deploy/kubernetes/cronjob-recluster.yaml (`ray job submit`).
#
#   DATA  the feature set (a Parquet folder on the shared volume, or s3://...)      required
#   ROOT  a folder every Ray node sees (the shared volume): runs/, labels/, latest  required
#   K     the number of clusters (required for the first run; later runs keep the previous k)
#
# ROOT/latest points at the newest model (runs/<UTC stamp>); each run reclusters from it into a new
# folder, labels every row with the kept ids into labels/<stamp>, and only then moves `latest`
# (an atomic rename): a failed run leaves `latest` and every earlier output as they were.
# Overlap: schedulers may start a run while the previous one still works. The previous run holds
# ROOT/.recluster.lock; a run that cannot take it says so and exits 0 (skipped, not failed).
set -euo pipefail
: "${DATA:?set DATA to the feature set}" "${ROOT:?set ROOT to a folder every node sees}"
JOBS=$(cd "$(dirname "$0")/../../jobs" && pwd)
mkdir -p "$ROOT/runs" "$ROOT/labels"

exec 9>"$ROOT/.recluster.lock"
if ! flock -n 9; then
  echo "[ray_ncut] the previous recluster still runs (it holds $ROOT/.recluster.lock): skipping this one"
  exit 0
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
NEW="$ROOT/runs/$STAMP"
if [ -e "$ROOT/latest" ]; then
  python "$JOBS/recluster.py" --previous "$(readlink -f "$ROOT/latest")" --data "$DATA" --out "$NEW" ${K:+--k "$K"}
else
  python "$JOBS/train.py" --data "$DATA" --k "${K:?set K for the first run}" --out "$NEW"
fi
python "$JOBS/assign.py" --model "$NEW" --data "$DATA" --out "$ROOT/labels/$STAMP"
ln -sfn "runs/$STAMP" "$ROOT/.latest.tmp" && mv -T "$ROOT/.latest.tmp" "$ROOT/latest"
echo "[ray_ncut] $ROOT/latest -> runs/$STAMP; labels in $ROOT/labels/$STAMP"
