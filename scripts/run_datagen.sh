#!/usr/bin/env bash
# Data generation stages. Usage: bash scripts/run_datagen.sh <stage> [stage arguments...]
#
# Stages:
#   synth   SynthContact: synthetic human-object contact images in the DAMON layout
#           (python -m preprocess_data.synthcontact; default --output-dir data/synthcontact)
#   synth-train  what the bundled joint model trains on besides: object contact on the class templates and the
#           foot-ground files (synthcontact_objects + synthcontact_footground; default --data-dir data/synthcontact)
#   damon   DAMON object-wise pickles, foot-ground variants, body-render masks (+ 2D masks)  (make_masks_damon)
#   lemon   LEMON human masks + body parts, object heat maps                                 (make_masks_lemon)
#   rich    RICH downscaled images, masks, index pickles for train and val                   (make_masks_rich)
#   piad    PIAD heat-map renders, labels, p2pmaps, missing lookup pickles                   (make_piad_renders)
#   pico    PICO mesh renders, contact masks, p2vmaps, contact vertices, image lists         (make_pico_renders)
#   templates  human template renders for every view set a recipe uses                      (datagen_common)
#   These read the raw release files under --dataset-dir (default data/); `<stage> --help` lists the formats.
#
# Default paths are inside the repository root, found from this script's location, so the script can be called
# from anywhere (paths you pass are relative to your working directory). PYTHON overrides the interpreter
# (default: the repository's .venv, else python3).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then
        PYTHON="${REPO_ROOT}/.venv/bin/python"
    else
        PYTHON="python3"
    fi
fi

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

has_arg() {  # has_arg <flag> <args...>: is the flag (or --flag=value) among the arguments?
    local flag="$1"; shift
    local a
    for a in "$@"; do
        [[ "$a" == "$flag" || "$a" == "$flag="* ]] && return 0
    done
    return 1
}

if [[ $# -lt 1 ]]; then
    usage >&2
    exit 2
fi
stage="$1"; shift

case "${stage}" in
    synth)
        args=("$@")
        if ! has_arg --output-dir "${args[@]+"${args[@]}"}"; then
            args=(--output-dir "${REPO_ROOT}/data/synthcontact" "${args[@]+"${args[@]}"}")
        fi
        export PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
        exec "${PYTHON}" -m preprocess_data.synthcontact "${args[@]}"
        ;;
    synth-train)
        data_dir="${REPO_ROOT}/data/synthcontact"
        if [[ "${1:-}" == "--data-dir" ]]; then data_dir="$2"; shift 2; fi
        export PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
        "${PYTHON}" -m preprocess_data.synthcontact_objects --data-dir "${data_dir}" "$@"
        exec "${PYTHON}" -m preprocess_data.synthcontact_footground --data-dir "${data_dir}"
        ;;
    damon|lemon|rich|piad|pico|templates)
        case "${stage}" in
            damon) entry=(-m preprocess_data.make_masks_damon) ;;
            lemon) entry=(-m preprocess_data.make_masks_lemon) ;;
            rich) entry=(-m preprocess_data.make_masks_rich) ;;
            piad) entry=(-m preprocess_data.make_piad_renders) ;;
            pico) entry=(-m preprocess_data.make_pico_renders) ;;
            templates) entry=(-m preprocess_data.datagen_common templates) ;;
        esac
        export PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
        exec "${PYTHON}" "${entry[@]}" "$@"
        ;;
    -h|--help|help)
        usage
        ;;
    *)
        echo "run_datagen.sh: unknown stage '${stage}'. Known stages: synth synth-train damon lemon rich piad pico templates" >&2
        usage >&2
        exit 2
        ;;
esac
