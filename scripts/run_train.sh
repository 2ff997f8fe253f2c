#!/usr/bin/env bash
# Train a named configuration (training/recipes.py): hcontact-damon-fix, hcontact-wScene, oafford-lemon-piad,
# hcontact-ocontact, synth-tiny, synth-sam, synth-tiny-2d, synth-vision, synth-tiny-joint-text, synth-tiny-joint,
# synth-tiny-joint-opening-text, synth-tiny-joint-opening, synth-tiny-joint-opening-object,
# synth-tiny-joint-opening-parts-text, synth-tiny-joint-opening-parts, synth-tiny-joint-opening-parts-object.
# Extra arguments go to train.py (e.g. --set epochs=2 --resume auto).
#   bash scripts/run_train.sh synth-tiny                 # CPU, one process
#   bash scripts/run_train.sh hcontact-damon-fix         # all local GPUs through the deepspeed launcher
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
known="hcontact-damon-fix hcontact-wScene oafford-lemon-piad hcontact-ocontact synth-tiny synth-sam synth-tiny-2d synth-vision synth-tiny-joint-text synth-tiny-joint synth-tiny-joint-opening-text synth-tiny-joint-opening synth-tiny-joint-opening-object synth-tiny-joint-opening-parts-text synth-tiny-joint-opening-parts synth-tiny-joint-opening-parts-object"
name="${1:-}"
[ -n "$name" ] || { echo "usage: bash scripts/run_train.sh <recipe> [train.py args]; recipes: $known" >&2; exit 2; }
shift
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
case "$name" in
  hcontact-damon-fix|hcontact-wScene|oafford-lemon-piad|hcontact-ocontact)
    if command -v nvidia-smi >/dev/null 2>&1 && command -v deepspeed >/dev/null 2>&1; then
      exec deepspeed --master_port "$((20000 + RANDOM % 5000))" train.py --recipe "$name" "$@"
    fi
    exec "$py" train.py --recipe "$name" "$@" ;;
  synth-tiny|synth-tiny-2d|synth-tiny-joint-text|synth-tiny-joint|synth-tiny-joint-opening-text|synth-tiny-joint-opening|synth-tiny-joint-opening-object|synth-tiny-joint-opening-parts-text|synth-tiny-joint-opening-parts|synth-tiny-joint-opening-parts-object)
    exec "$py" train.py --recipe "$name" "$@" ;;
  synth-vision)  # vision pretraining of the tiny CLIP tower (training/vision_pretrain.py), before synth-tiny-joint-text
    exec "$py" -m training.vision_pretrain --data-dir "$root/data" --image-size 224 \
      --output "$root/trained_models/vision/tiny_clip_synthcontact.safetensors" "$@" ;;
  synth-sam)  # pretraining of the 2D model's SAM image encoder (training/sam_pretrain.py), before synth-tiny-2d
    exec "$py" -m training.sam_pretrain --data-dir "$root/data" \
      --output "$root/trained_models/vision/tiny_sam512_synthcontact.safetensors" "$@" ;;
  *)
    echo "unknown recipe '$name'; known: $known" >&2
    exit 2 ;;
esac
