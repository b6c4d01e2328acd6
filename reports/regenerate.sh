#!/usr/bin/env bash
# Regenerate every example report in reports/ from the models in trained/.
# Run from anywhere: bash reports/regenerate.sh   (a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
for model in trained/*.pt; do
  name=$(basename "$model" .pt)
  echo "== $name"
  interp report "$model" --out "reports/$name" --force --quiet
done
echo "== compare_seed"
interp compare trained/seed_cnn.pt trained/seed_gap.pt trained/seed_aug.pt \
  --out reports/compare_seed --force --quiet
