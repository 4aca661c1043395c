#!/usr/bin/env bash
# The Kaggle path end to end on Kaggle-format files made by landmask's converter from the shared
# data: 70 % of training rows keep only 4 of the 15 points, as in the real Kaggle training.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
K=runs/kaggle-files
landmask convert --data $D/helen-68/trainset --kaggle $K/train --drop-partial 0.7
landmask convert --data $D/helen-68/testset --kaggle $K/test --kaggle-test $K/test
landmask train --data $K/train/training.csv --scheme kaggle15 --epochs 60 --out runs/kaggle-path
landmask evaluate --data $K/test/training.csv --model runs/kaggle-path --json runs/eval-kaggle-path.json --ced ""
landmask submit --test $K/test/test.csv --lookup $K/test/IdLookupTable.csv --model runs/kaggle-path/model.safetensors \
  --out $K/submission.csv --solution $K/test/solution.csv
