#!/usr/bin/env bash
# Evaluate a named model (extra arguments go to evaluate.py). Reports: <out>/<name>/results.{json,md}, tables: <out>/*.md
# (synth-tiny: table.md human contact, combinations.md per pose family × object, table_objects.md object contact)
#   bash scripts/run_eval.sh synth-tiny            # bundled tiny 3D model vs the baselines, SynthContact test + held-out:
#                                                  #   human contact (semantic/binary F1) and object contact (object F1)
#   bash scripts/run_eval.sh synth-tiny-2d         # bundled tiny 2D model (h2dcontact) vs the 2D class prior, both splits
#   bash scripts/run_eval.sh hcontact-damon-fix    # trained_models/interactvlm-3d-hcontact-damon-fix on DAMON test
#   bash scripts/run_eval.sh hcontact-wScene       # trained_models/interactvlm-3d-hcontact-wScene-damon-lemon-rich
#   bash scripts/run_eval.sh oafford               # trained_models/interactvlm-3d-oafford-lemon-piad on PIAD seen + unseen
#   bash scripts/run_eval.sh hcontact-ocontact     # the joint model: DAMON (human), PICO (object contact), PIAD (affordance)
# MODEL=<model dir> overrides the model of synth-tiny / synth-tiny-2d; OUT=<folder> the output folder;
# DATA_DIR=<folder> the data root (default data/, holding synthcontact/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
name="${1:-}"
known="synth-tiny synth-tiny-2d hcontact-damon-fix hcontact-wScene oafford hcontact-ocontact"
[ -n "$name" ] || { echo "usage: bash scripts/run_eval.sh <${known// /|}> [evaluate.py args]" >&2; exit 2; }
shift
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
baselines="trained_models/baselines"
data="${DATA_DIR:-data}"
table() { if [ "$1" = combinations ]; then shift; "$py" -m utils.evaluation combinations "$@"; else "$py" -m utils.evaluation table "$@"; fi; }
case "$name" in
  synth-tiny)
    model="${MODEL:-trained_models/interactvlm-tiny-synthcontact-opening-parts}"
    out="${OUT:-runs/eval_synth-tiny}"
    objects="synthcontact_ocontact"  # each image's own object mesh; + the class templates once they are rendered
    [ -d "$data/synthcontact/object_templates" ] && objects="$objects synthcontact_ocontact_canonical"
    for split in test test_heldout; do
      "$py" evaluate.py --model-dir "$model" --dataset synthcontact_hcontact $objects --split "$split" \
        --dataset-dir "$data" --output-dir "$out/model_$split" "$@"
      "$py" evaluate.py --baseline prior --baseline-path "$baselines/prior_synthcontact.npz" \
        --dataset synthcontact_hcontact --split "$split" --dataset-dir "$data" --output-dir "$out/prior_$split" "$@"
      "$py" evaluate.py --baseline direct --baseline-path "$baselines/direct_synthcontact.safetensors" \
        --dataset synthcontact_hcontact --split "$split" --dataset-dir "$data" --output-dir "$out/direct_$split" "$@"
    done
    table "$out/table.md" \
      "tiny InteractVLM (test)=$out/model_test/synthcontact_hcontact_test/results.json" \
      "frequency prior (test)=$out/prior_test/results.json" "direct classifier (test)=$out/direct_test/results.json" \
      "tiny InteractVLM (held-out)=$out/model_test_heldout/synthcontact_hcontact_test_heldout/results.json" \
      "frequency prior (held-out)=$out/prior_test_heldout/results.json" \
      "direct classifier (held-out)=$out/direct_test_heldout/results.json"
    table combinations "$out/combinations.md" "$data/synthcontact/test/meta.jsonl" "$data/synthcontact/test_heldout/meta.jsonl" \
      "tiny InteractVLM=$out/model_test/synthcontact_hcontact_test/results.json" \
      "tiny InteractVLM=$out/model_test_heldout/synthcontact_hcontact_test_heldout/results.json" \
      "frequency prior=$out/prior_test/results.json" "frequency prior=$out/prior_test_heldout/results.json" \
      "direct classifier=$out/direct_test/results.json" "direct classifier=$out/direct_test_heldout/results.json"
    rows=()
    for dataset in $objects; do
      rows+=("tiny InteractVLM, $dataset (test)=$out/model_test/${dataset}_test/results.json"
             "tiny InteractVLM, $dataset (held-out)=$out/model_test_heldout/${dataset}_test_heldout/results.json")
    done
    table "$out/table_objects.md" "${rows[@]}" ;;
  synth-tiny-2d)
    model="${MODEL:-trained_models/interactvlm-tiny-2d-synthcontact}"
    out="${OUT:-runs/eval_synth-tiny-2d}"
    for split in test test_heldout; do
      "$py" evaluate.py --model-dir "$model" --dataset synthcontact_h2dcontact --split "$split" --dataset-dir "$data" \
        --output-dir "$out/model_$split" "$@"
      "$py" evaluate.py --baseline prior2d --baseline-path "$baselines/prior2d_synthcontact.npz" \
        --dataset synthcontact_h2dcontact --split "$split" --dataset-dir "$data" --output-dir "$out/prior2d_$split" "$@"
    done
    table "$out/table.md" \
      "tiny 2D InteractVLM (test)=$out/model_test/results.json" "2D class prior (test)=$out/prior2d_test/results.json" \
      "tiny 2D InteractVLM (held-out)=$out/model_test_heldout/results.json" \
      "2D class prior (held-out)=$out/prior2d_test_heldout/results.json" ;;
  hcontact-damon-fix)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-hcontact-damon-fix --dataset damon_hcontact --split test "$@" ;;
  hcontact-wScene)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-hcontact-wScene-damon-lemon-rich --dataset damon_hcontact --split test "$@" ;;
  oafford)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-oafford-lemon-piad \
      --dataset piad_oafford piad_unseen_oafford --split test --output-dir "${OUT:-runs/eval_oafford}" "$@" ;;
  hcontact-ocontact)
    exec "$py" evaluate.py --model-dir trained_models/interactvlm-3d-hcontact-ocontact \
      --dataset damon_hcontact pico_ocontact piad_oafford --split test --output-dir "${OUT:-runs/eval_hcontact-ocontact}" "$@" ;;
  *)
    echo "unknown evaluation '$name'; known: $known" >&2
    exit 2 ;;
esac
