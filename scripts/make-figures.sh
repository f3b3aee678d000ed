#!/usr/bin/env bash
# Regenerate figures/: the demo (SGD, SAM, fSGLD, SGLD on noisy digits, 3 seeds each), loss
# landscapes around its seed-0 solutions, and `flatscope verify` of fSGLD against SGD.
# About 4-8 minutes on 2 CPU cores. Checkpoints and reports land in figures/runs and
# figures/analysis, which git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."
fs=.venv/bin/flatscope
runs=figures/runs
$fs demo --out figures
$fs landscape "$runs"/fsgld-seed0/final.pt "$runs"/sgd-seed0/final.pt "$runs"/sam-seed0/final.pt \
    --subset 512 --out figures/landscape --quiet
$fs landscape "$runs"/fsgld-seed0/final.pt --directions "interp:$runs/sgd-seed0/final.pt" \
    --subset 512 --out figures/landscape --quiet
# both planes in one call, so that their contour and surface figures share one colour scale
$fs landscape "$runs"/sgd-seed0/final.pt "$runs"/fsgld-seed0/final.pt --dims 2 --subset 512 \
    --out figures/landscape/2d --quiet
# exit status 1 (a claim does not hold) is a result here, not a failure of the script
$fs verify "$runs"/fsgld-seed0/final.pt --reference "$runs"/sgd-seed0/final.pt \
    --subset 512 --bottom-k 1 --quiet > figures/verify-fsgld-vs-sgd.txt || [ $? -eq 1 ]
