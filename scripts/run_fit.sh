#!/usr/bin/env bash
# Joint human-object fitting: place the object mesh next to the person from their contacts (optim/).
#   bash scripts/run_fit.sh                                        # the bundled example -> outputs/fit/<name>/
#   bash scripts/run_fit.sh path/to/input_dir                       # image.*, human.*, camera.json, contacts, mesh, mask
#   bash scripts/run_fit.sh path/to/input_dir --recipe original --frames 10 --video
# Extra arguments after the input folder go to `python -m optim.fit` (see its --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
case "${1:-}" in
  -h|--help) cd "$root" && exec "$py" -m optim.fit --help ;;
esac
input="${1:-$root/data/fit_samples/chair__test_000015}"
[ $# -ge 1 ] && shift
name="$(basename "$input")"
cd "$root"
exec "$py" -m optim.fit --input-dir "$input" --output-dir "${FIT_OUTPUT_DIR:-$root/outputs/fit/$name}" "$@"
