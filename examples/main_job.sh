#!/usr/bin/env bash
# The main job, end to end on the embedded default (the digits data bundled with scikit-learn):
#   1. train the default small LM-HT network (digitsnet, L=2, T=2, 1x8x8 digits) with STBP;
#   2. reload the saved checkpoint (authors' format + JSON sidecar) and measure its test accuracy;
#   3. compile it: BN folding, reparameterization to single-threshold LIF neurons over L*T steps
#      (the lossless front-loaded "exact" window schedule, the default),
#      with the per-layer exactness report measured on the test images;
#   4. print the compiled network's layer table;
#   5. simulate the compiled network with the float reference executor on the test set;
#   6. run the integer network (8-bit weights, calibrated on the first 256 training images) with the
#      bit-accurate event-driven runtime on the test set;
#   7. sweep the weight width (4..16 bits and the widest setting): integer vs float accuracy, table + PNG;
#   8. export the compiled float network to ONNX;
#   9. export the integer network to ONNX (bit-exact with the runtime);
#  10. verify: run float, int, onnx and onnx-int on the same test images and compare them pair by pair
#      (every integer pair must be bit-exact, or the job fails);
#  11. report SOPs, energy (45 nm model) and Loihi 2 resources per layer from the runtime's event counts
#      (table, out/report.json, PNG plots in out/report/);
#  12. export the integer network as Lava processes and verify Lava against the runtime and the integer
#      ONNX model on 16 test images (bit-exact, or the job fails).
set -euo pipefail
OUT=${1:-out}
LMHTC=${LMHTC:-.venv/bin/lmhtc}
mkdir -p "$OUT"

echo "== 1. train (STBP) =="
$LMHTC train -o "$OUT/model.pth"

echo "== 2. reload and evaluate the checkpoint =="
$LMHTC evaluate "$OUT/model.pth"

echo "== 3. compile (fold BN, reparameterize L=2,T=2 -> LIF over 4 steps) =="
$LMHTC dataset --form 8 --split test -o "$OUT/digits8_test.npz"
$LMHTC dataset --form 8 --split calib -o "$OUT/digits8_calib.npz"
$LMHTC compile "$OUT/model.pth" -o "$OUT/model.lmhtc" --check "$OUT/digits8_test.npz" --check-limit 360 \
    --calib "$OUT/digits8_calib.npz" --weight-bits 8

echo "== 4. inspect =="
$LMHTC inspect "$OUT/model.lmhtc"

echo "== 5. simulate (float reference executor) =="
$LMHTC simulate "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" -o "$OUT/simulate_float.npz"

echo "== 6. simulate (bit-accurate integer runtime) =="
$LMHTC simulate "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" -o "$OUT/simulate_int.npz" --mode int

echo "== 7. integer accuracy vs weight bits =="
$LMHTC sweep "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" --calib "$OUT/digits8_calib.npz" \
    --bits 4,5,6,8,10,12,16 --plot "$OUT/bits_sweep.png" --json "$OUT/bits_sweep.json"

echo "== 8. export (ONNX, float) =="
$LMHTC export "$OUT/model.lmhtc" --target onnx -o "$OUT/model.onnx"

echo "== 9. export (ONNX, integer) =="
$LMHTC export "$OUT/model.lmhtc" --target onnx-int -o "$OUT/model_int.onnx"

echo "== 10. verify the targets against each other =="
$LMHTC verify "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" --targets float,int,onnx,onnx-int \
    --json "$OUT/verify.json"

echo "== 11. SOPs, energy and chip resources (integer runtime counts) =="
$LMHTC report "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" --energy-model 45nm --hardware loihi2 \
    --json "$OUT/report.json" --plots "$OUT/report"

echo "== 12. Lava: export and verify against the runtime =="
rm -rf "$OUT/lava.new"
$LMHTC export "$OUT/model.lmhtc" --target lava -o "$OUT/lava.new"
rm -rf "$OUT/lava" && mv "$OUT/lava.new" "$OUT/lava"
$LMHTC verify "$OUT/model.lmhtc" --inputs "$OUT/digits8_test.npz" --limit 16 --targets int,onnx-int,lava \
    --json "$OUT/verify_lava.json"
