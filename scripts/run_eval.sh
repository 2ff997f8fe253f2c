#!/usr/bin/env bash
# Evaluate a named model (extra arguments go to evaluate.py).
#   bash scripts/run_eval.sh synth-tiny            # bundled tiny model vs both baselines, SynthContact test + held-out splits
#   bash scripts/run_eval.sh synth-tiny-2d         # bundled tiny 2D model (h2dcontact) vs the 2D class prior, both splits
#   bash scripts/run_eval.sh hcontact-damon-fix    # trained_models/interactvlm-3d-hcontact-damon-fix on DAMON test
#   bash scripts/run_eval.sh hcontact-wScene       # trained_models/interactvlm-3d-hcontact-wScene-damon-lemon-rich
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
name="${1:-}"
[ -n "$name" ] || { echo "usage: bash scripts/run_eval.sh <synth-tiny|synth-tiny-2d|hcontact-damon-fix|hcontact-wScene> [evaluate.py args]" >&2; exit 2; }
shift
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
case "$name" in
  synth-tiny)
    model="trained_models/interactvlm-tiny-synthcontact"
    out="runs/eval_synth-tiny"
    for split in test test_heldout; do
      "$py" evaluate.py --model-dir "$model" --dataset synthcontact_hcontact --split "$split" --output-dir "$out/model_$split" "$@"
      "$py" evaluate.py --baseline prior --baseline-path trained_models/baselines/prior_synthcontact.npz \
        --dataset synthcontact_hcontact --split "$split" --output-dir "$out/prior_$split" "$@"
      "$py" evaluate.py --baseline direct --baseline-path trained_models/baselines/direct_synthcontact.safetensors \
        --dataset synthcontact_hcontact --split "$split" --output-dir "$out/direct_$split" "$@"
    done
    "$py" -m utils.evaluation table "$out/table.md" \
      "tiny InteractVLM (test)=$out/model_test/results.json" "frequency prior (test)=$out/prior_test/results.json" \
      "direct classifier (test)=$out/direct_test/results.json" \
      "tiny InteractVLM (held-out)=$out/model_test_heldout/results.json" "frequency prior (held-out)=$out/prior_test_heldout/results.json" \
      "direct classifier (held-out)=$out/direct_test_heldout/results.json" ;;
  synth-tiny-2d)
    model="trained_models/interactvlm-tiny-2d-synthcontact"
    out="runs/eval_synth-tiny-2d"
    for split in test test_heldout; do
      "$py" evaluate.py --model-dir "$model" --dataset synthcontact_h2dcontact --split "$split" --output-dir "$out/model_$split" "$@"
      "$py" evaluate.py --baseline prior2d --baseline-path trained_models/baselines/prior2d_synthcontact.npz \
        --dataset synthcontact_h2dcontact --split "$split" --output-dir "$out/prior2d_$split" "$@"
    done
    "$py" -m utils.evaluation table "$out/table.md" \
      "tiny 2D InteractVLM (test)=$out/model_test/results.json" "2D class prior (test)=$out/prior2d_test/results.json" \
      "tiny 2D InteractVLM (held-out)=$out/model_test_heldout/results.json" \
      "2D class prior (held-out)=$out/prior2d_test_heldout/results.json" ;;
  hcontact-damon-fix)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-hcontact-damon-fix --dataset damon_hcontact --split test "$@" ;;
  hcontact-wScene)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-hcontact-wScene-damon-lemon-rich --dataset damon_hcontact --split test "$@" ;;
  *)
    echo "unknown evaluation '$name'; known: synth-tiny synth-tiny-2d hcontact-damon-fix hcontact-wScene" >&2
    exit 2 ;;
esac
