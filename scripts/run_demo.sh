#!/usr/bin/env bash
# InteractVLM demo. Extra arguments after the third go to run_demo.py (e.g. --object chair --device cpu).
#   bash scripts/run_demo.sh                                   # hcontact on data/demo_samples, bundled model
#   bash scripts/run_demo.sh hcontact my_photos file           # my_photos/<object>__<id>.jpg
#   bash scripts/run_demo.sh hcontact list.json manifest       # JSON/CSV manifest: image + objects
#   bash scripts/run_demo.sh hcontact-wScene my_photos file    # scene / ground contact
#   bash scripts/run_demo.sh ocontact                          # object contact on data/demo_samples/object_samples.json
#   bash scripts/run_demo.sh hcontact frames/ folder --video-frames --object chair --smooth 5
# Modes: hcontact hcontact-wScene h2dcontact oafford ocontact hcontact-ocontact
# Default model: trained_models/interactvlm-tiny-synthcontact-opening-parts (synthetic data only); --model DIR for another.
# Outputs: outputs/demo/<mode>/<sample>/ (replaced by every run), or --output-dir DIR (an earlier run's results there
# need --overwrite); the input folder is never written to, and no file the demo did not write is ever overwritten.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
mode="${1:-hcontact}"
case "$mode" in
  hcontact|hcontact-wScene|h2dcontact) default_input="$root/data/demo_samples"; default_kind=folder ;;
  oafford|ocontact|hcontact-ocontact) default_input="$root/data/demo_samples/object_samples.json"; default_kind=manifest ;;
  -h|--help) exec "$py" "$root/run_demo.py" --help ;;
  *) echo "unknown mode '$mode'; known: hcontact hcontact-wScene h2dcontact oafford ocontact hcontact-ocontact" >&2; exit 2 ;;
esac
input="${2:-$default_input}"
if [ $# -ge 3 ]; then
  kind="$3"
elif [ $# -ge 2 ]; then
  kind=auto
else
  kind="$default_kind"
fi
case "$kind" in
  folder|file|manifest|auto) ;;
  *) echo "unknown input mode '$kind'; use folder, file or manifest" >&2; exit 2 ;;
esac
shift $(( $# < 3 ? $# : 3 ))
# --opt=value: an input whose name starts with '-' (e.g. -chair__x.jpg) is not taken for an option
exec "$py" "$root/run_demo.py" "--mode=$mode" "--input=$input" "--input-mode=$kind" "$@"
