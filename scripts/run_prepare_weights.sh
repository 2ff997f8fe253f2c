#!/usr/bin/env bash
# ZeRO checkpoint of a training run → merged release model in trained_models/<name>.
#   bash scripts/run_prepare_weights.sh runs/interactvlm-tiny-synthcontact [name]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${1:-}"
[ -n "$run_dir" ] || { echo "usage: bash scripts/run_prepare_weights.sh <run dir> [model name]" >&2; exit 2; }
name="${2:-$(basename "$run_dir")}"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
cd "$root"
exec "$py" -m training.prepare_weights --run-dir "$run_dir" --name "$name"
