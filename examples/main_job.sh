#!/usr/bin/env bash
# The main job, end to end on the embedded default (the digits data bundled with scikit-learn):
#   1. train the default small LM-HT network (digitsnet, L=2, T=2, 1x8x8 digits) with STBP;
#   2. reload the saved checkpoint (authors' format + JSON sidecar) and measure its test accuracy.
# Later stages (compile, simulate, export, report) are appended here as they land.
set -euo pipefail
OUT=${1:-out}
LMHTC=${LMHTC:-.venv/bin/lmhtc}
mkdir -p "$OUT"

echo "== 1. train (STBP) =="
$LMHTC train -o "$OUT/model.pth"

echo "== 2. reload and evaluate the checkpoint =="
$LMHTC evaluate "$OUT/model.pth"
