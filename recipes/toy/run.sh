#!/usr/bin/env bash
# The built-in toy demo: train and decode one audio-like and one image-like model (~1 min).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ms2s="${MS2S_VENV:-$HOME/.venvs/ms2s}/bin/ms2s"
for task in sequences images; do
  "$ms2s" train "$task.yaml" --out "../../exp/toy_$task" --resume
  "$ms2s" evaluate --model "../../exp/toy_$task/best.pt"
done
