#!/usr/bin/env bash
# The proof that `rscovlm train` learns: synthetic scenes with known truth -> prepare ->
# train a small model of the project's own architecture (Qwen2.5-VL) from scratch ->
# detect on held-out scenes (other seeds) -> `rscovlm evaluate` (DOTA_devkit mAP@0.5).
#
# RESULT (2026-12-01, session 5, CPU only: 2 shared cores, no GPU; the goal is NOT reached,
#   but the model learns and ships as resources/demo-model):
#   The run below (session 4) went on from checkpoint-8000 to step 10,000 (loss 0.84).
#   Held-out scenes 1001-1020, as below (mean F1 at IoU 0.5 in brackets after mAP):
#     step  6,000: mAP 0.029 (0.08); planes 26 m (147), 34 %; tanks 16 m (223), 34 %
#     step  8,000: mAP 0.109 (0.24); planes 19 m (171), 71 %; tanks  7 m (216), 50 %
#     step 10,000: mAP 0.165 (0.32; mmrotate 0.183); planes 16 m (178), 74 %; tanks 7 m (215), 45 %
#   Second stage from that model, a fresh cosine schedule (1 h 16 min; loss 0.84 -> 0.80):
#     INIT=$WORK/model MODEL=$WORK/model-stage2 STEPS=5000 LR=2e-4 bash scripts/train_demo_model.sh
#     -> mAP 0.208 (0.40; mmrotate 0.229); planes 12.5 m (170), 80 %; tanks 6.6 m (253), 61 %
#   Third stage from that one (40 min; loss 0.80 -> 0.77):
#     INIT=$WORK/model-stage2 MODEL=$WORK/model-stage3 STEPS=2500 LR=1e-4 SHIP=1 bash scripts/train_demo_model.sh
#     -> mAP 0.270 (0.45; mmrotate 0.283); planes 10 m (169), 78 %; tanks 9 m (264), 61 %
#   That model ships as resources/demo-model (21 MB; its README.md has the per-class table).
#   The curve still rises (AP75 0.05: boxes are found, not yet tight): more steps, on a GPU.
#
# RESULT (2026-12-01, session 4, CPU only: 2 shared cores, no GPU; the goal is NOT reached):
#   Session 4 re-ran the defaults below after the fix of 2026-11-25 (training batches now
#   carry mm_token_type_ids, so image tokens get the same 2-D M-RoPE positions in training
#   as in generation; before, every run below trained on 1-D positions).
#   Loss: 1.32 (step 1000) -> 1.22 (1500) -> 1.07 (3500), as before the fix (1.24 at 1000,
#   1.00 at 4000).
#   Held-out scenes 1001-1020 (101 planes, 44 tanks), DOTA_devkit mAP@0.5 (random-score
#   mAP_nc) and scripts/localisation_error.py (median centre distance, share of objects
#   holding a predicted centre; random centres in brackets):
#     step 3,500: mAP 0.006; planes 30 m (155), 31 % (2 %); tanks 32 m (232), 11 % (0 %)
#     step 4,500: mAP 0.012; planes 27 m (171), 29 % (4 %); tanks 25 m (230), 23 % (0 %)
#   (session 3's final model: 1 plane in 26 held a predicted centre). The run was resumed
#   at step 3,500 with the same command, once `--resume` reloaded full-model weights.
#   What scripts/answer_accuracy.py shows (teacher-forced, step 3,500, 400 training tiles):
#     - the first digit of x1 (the top vertex's x, which also depends on the object's
#       turn) is right 0.33 of the time, against 0.46 for always guessing the commonest
#       digit; y1 0.53 against 0.49: it does not yet write the first vertex;
#     - yet on single-object tiles a linear probe reads the object's centre from the state
#       that predicts x1 with R^2 0.78 (x) and 0.76 (y): it knows roughly where the object
#       is (as the held-out centres above show) and has not learnt to write its vertices.
#   Pilots on single-object tiles only (5,002 tiles, 800-1,000 steps each): x1's first digit
#   stayed at its prior with rope_theta 20 (the small size's), 1e6 (Qwen's own) and 1000
#   with mrope_section 2,7,7. Nothing in the rope settings unlocks it at this budget.
#
# RESULT OF THE DEFAULTS BELOW (2026-11-25, session 3, before the position fix):
#   base: `make-tiny-model --size small` (Qwen2.5-VL, 5.36 M parameters, random init,
#         rope_theta 20 so M-RoPE can resolve image columns; see rscovlm/tiny_model.py)
#   data: 640 synth scenes 1024 px at 0.5 m (seeds 1-640) -> 30,733 tiles of 256 px
#         (252 px input) with overlap 128; 12,675 kept (the 8,186 holding a plane or a
#         storage tank + 20 % of the empty ones); 9,970 plane and 4,372 tank instances;
#         each drawing a random flip / quarter turn (--flip-rotate). synth 1.3 s/scene,
#         prepare 13 min.
#   train: full, 10,000 steps x 8 tiles (6.3 epochs), lr 1e-3 cosine, 1 h 45 min;
#          loss 7.09 (step 20) -> 1.24 (1000) -> 1.12 (2000) -> 1.00 (4000) -> 0.89 (6000)
#          -> 0.83 (8000) -> 0.77 (10000), no sharp second fall
#   held-out scenes 1001-1006 (26 planes, 15 tanks): 29 detections, none at IoU > 0.5;
#          DOTA_devkit and mmrotate mAP@0.5 = 0.0. scripts/localisation_error.py: predicted
#          plane centres lie a median 61 m from the nearest plane (random centres: 219 m),
#          1 plane in 26 holds a predicted centre; tanks no better than random (210 vs 246 m).
#          GOAL (>= 0.5) NOT REACHED; no demo model shipped.
#   What holds it back (scripts/probe_positions.py, step 3,000): the image tokens' states
#          already tell objects from ground (linear-probe AUC 0.95 planes, 1.00 tanks) and,
#          from the first language-model layer on, where they are (R^2 0.99 rows, 0.97
#          columns); what is slow to learn is writing that place as digits: at step 6,000
#          the first digit of an object's first coordinate is right 1 time in 3
#          (teacher-forced), and greedy answers barely depend on the image.
#   Earlier: session 1 (24 scenes 2048 px, five classes, 3,000 steps) and session 2 (160
#   scenes, no flips, 10 % empty, 6,000 steps, 63 min) also ended at 0.0; session 2 fitted
#   its own scenes (25 px centre error on training-scene tiles) but not new ones.
#   Next: a GPU (DEVICE=cuda STEPS=100000 BATCH=32); on a CPU nothing under ~2 h reaches it.
#
# Every knob is an environment variable; the defaults are the reported run and are
# deterministic (fixed synth, split and training seeds). On a CPU keep it nice'd; on a GPU
# set DEVICE=cuda (and raise STEPS and BATCH). The trained model is $WORK/model; SHIP=1
# copies the evaluated model's weights and settings into resources/demo-model, which
# `make demo` uses (then update resources/demo-model/README.md and the floors in
# tests/backend/test_demo_model.py with the new figures).
set -euo pipefail

cd "$(dirname "$0")/.."
RSCOVLM=${RSCOVLM:-$( [ -x .venv/bin/rscovlm ] && echo .venv/bin/rscovlm || echo rscovlm )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
WORK=${WORK:-build/demo-train}
TRAIN_SEEDS=${TRAIN_SEEDS:-"$(seq -s ' ' 1 640)"}
TEST_SEEDS=${TEST_SEEDS:-"$(seq -s ' ' 1001 1020)"}   # session 3 used 1001-1006
SIZE=${SIZE:-1024}              # scene side in pixels: small scenes pack an apron and a tank farm each
GSD=${GSD:-0.5}                 # metres per pixel: planes 56-140 px, storage tanks 24-70 px
TILE=${TILE:-256}               # 256 px tiles -> 252 x 252 model input, 81 visual tokens
OVERLAP=${OVERLAP:-128}         # training tiles: every object seen at several offsets
TEST_OVERLAP=${TEST_OVERLAP:-64}
KEEP_EMPTY=${KEEP_EMPTY:-0.2}   # share of object-free training tiles kept (they teach "There are none.")
FLIP_ROTATE=${FLIP_ROTATE:-1}   # 1: each drawing is a random one of the tile's 8 flips / quarter turns
MODEL_SIZE=${MODEL_SIZE:-small} # `make-tiny-model --size`: ~5.4 M parameters
STEPS=${STEPS:-10000}           # optimiser steps
BATCH=${BATCH:-8}
LR=${LR:-1e-3}                  # from scratch: far above the paper's fine-tuning 2e-6
SEED=${SEED:-0}
DEVICE=${DEVICE:-cpu}
# The compact classes: a 5 M-parameter model trained for an hour on a CPU can place
# objects that span several of its 28 px visual tokens, not 4 px wide cars.
CLASSES=${CLASSES:-"plane,storage tank"}
FORM=${FORM:-quad}              # answer form (quad | hbb): prepare, train and detect all use it
INIT=${INIT:-}                  # start from this model instead of a random one (a second stage)
DATA=${DATA:-$WORK/data$( [ "$FORM" = quad ] || echo "-$FORM" )}
MODEL=${MODEL:-$WORK/model$( [ "$FORM" = quad ] || echo "-$FORM" )}
NICE="nice -n ${NICENESS:-10}"
JOBS=${JOBS:-$(nproc)}           # scenes made and cut at once (synth, prepare --workers)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
IFS=',' read -r -a class_list <<< "$CLASSES"

mkdir -p "$WORK/scenes"
echo ">> base model: a $MODEL_SIZE random Qwen2.5-VL"
[ -f "$WORK/base/config.json" ] || $NICE "$RSCOVLM" make-tiny-model "$WORK/base" --size "$MODEL_SIZE" --seed "$SEED"

echo ">> synthetic scenes (train: seeds ${TRAIN_SEEDS%% *}..${TRAIN_SEEDS##* }; held out: $TEST_SEEDS)"
rasters=(); labels=()
make_scene() {   # seed -> scene_SEED.tif and truth_SEED.gpkg, unless already made
  local tif="$WORK/scenes/scene_$1.tif"
  [ -f "$tif" ] || $NICE "$RSCOVLM" synth "$tif" --truth "$WORK/scenes/truth_$1.gpkg" --size "$SIZE" --seed "$1" \
    --gsd "$GSD" --workers 1 >/dev/null
}
export -f make_scene; export WORK SIZE GSD RSCOVLM NICE
printf '%s\n' $TRAIN_SEEDS $TEST_SEEDS | xargs -P "$JOBS" -I{} bash -c 'make_scene {}'
for seed in $TRAIN_SEEDS; do
  rasters+=("$WORK/scenes/scene_$seed.tif"); labels+=("$WORK/scenes/truth_$seed.gpkg")
done

if [ ! -f "$DATA/.ready" ]; then
echo ">> prepare ($TILE px tiles, overlap $OVERLAP, classes: $CLASSES, form $FORM)"
rm -rf "$DATA"
$NICE "$RSCOVLM" prepare "$DATA" --form "$FORM" --raster "${rasters[@]}" --labels "${labels[@]}" \
  --tile-size "$TILE" --overlap "$OVERLAP" --val-fraction 0.02 --seed "$SEED" --classes "${class_list[@]}" --workers "$JOBS" --quiet
# Most tiles are empty of these classes: keep a fixed, seeded share of them.
"$PYTHON" - "$DATA/train.jsonl" "$KEEP_EMPTY" "$SEED" <<'PY'
import json, random, sys
path, keep, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
lines = open(path, encoding="utf-8").read().splitlines()
kept = [l for l in lines if json.loads(l)["objects"] or rng.random() < keep]
open(path, "w", encoding="utf-8").write("\n".join(kept) + "\n")
print(f"   kept {len(kept)} of {len(lines)} training tiles")
PY
touch "$DATA/.ready"
fi

if [ ! -f "$MODEL/config.json" ] && [ -z "${SKIP_TRAIN:-}" ]; then
  echo ">> train (full, from ${INIT:-scratch}, $STEPS steps x $BATCH tiles, lr $LR)"
  $NICE "$RSCOVLM" train "$DATA" --model "${INIT:-$WORK/base}" --output "$MODEL" --method full --train-vision \
    --max-steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --device "$DEVICE" --no-resize --exact-prompt 1.0 \
    --logging-steps 20 --save-steps 500 --seed "$SEED" --no-eval $( [ "$FLIP_ROTATE" = 1 ] && echo --flip-rotate ) \
    $( [ -d "$MODEL" ] && echo --resume )
fi

# EVAL_MODEL=$WORK/model/checkpoints/checkpoint-N SKIP_TRAIN=1 measures a checkpoint while training runs.
EVAL_MODEL=${EVAL_MODEL:-$MODEL}
EVAL=${EVAL:-$WORK/eval$( [ "$FORM" = quad ] || echo "-$FORM" )}
echo ">> detect on the held-out scenes with $EVAL_MODEL"
mkdir -p "$EVAL"
for seed in $TEST_SEEDS; do
  $NICE "$RSCOVLM" detect "$WORK/scenes/scene_$seed.tif" -o "$EVAL/detections_$seed.gpkg" --model "$EVAL_MODEL" \
    --classes "$CLASSES" --tile-size "$TILE" --overlap "$TEST_OVERLAP" --device "$DEVICE" --max-new-tokens 512 --form "$FORM"
done

echo ">> evaluate (all held-out scenes together, one image per scene)"
"$PYTHON" - "$WORK" "$EVAL" "$TEST_SEEDS" <<'PY'
import sys
import geopandas as gpd
import pandas as pd
work, out, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
for kind in ("detections", "truth"):
    parts = []
    for seed in seeds:
        path = f"{out}/{kind}_{seed}.gpkg" if kind == "detections" else f"{work}/scenes/truth_{seed}.gpkg"
        part = gpd.read_file(path)
        part["scene"] = f"scene_{seed}"
        parts.append(part)
    gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=parts[0].crs).to_file(f"{out}/heldout_{kind}.gpkg")
PY
$NICE "$RSCOVLM" evaluate --pred "$EVAL/heldout_detections.gpkg" --truth "$EVAL/heldout_truth.gpkg" \
  --image-field scene --classes "$CLASSES" --out "$EVAL/report"
echo ">> how near the boxes come (a signal while mAP is still 0)"
"$PYTHON" scripts/localisation_error.py --pred "$EVAL/heldout_detections.gpkg" --truth "$EVAL/heldout_truth.gpkg" \
  --image-field scene --classes "$CLASSES"
du -sh "$EVAL_MODEL"

if [ -n "${SHIP:-}" ]; then
  echo ">> ship $EVAL_MODEL as resources/demo-model"
  for f in config.json model.safetensors; do   # a full model, not an adapter or a half-written folder
    [ -f "$EVAL_MODEL/$f" ] || { echo "SHIP: $EVAL_MODEL has no $f; ship a full model folder (train --method full)." >&2; exit 2; }
  done
  mkdir -p resources/demo-model
  for f in config.json generation_config.json model.safetensors processor_config.json tokenizer.json \
      tokenizer_config.json chat_template.jinja training_info.json loss_curve.png; do
    if [ -f "$EVAL_MODEL/$f" ]; then install -m 644 "$EVAL_MODEL/$f" resources/demo-model/; fi
  done
  du -sh resources/demo-model
fi
