#!/usr/bin/env bash
# Phone-menu speech recognition, end to end: install the TTS voices (as root), synthesise the
# corpus, train a Listen-Attend-Spell model, evaluate every test set with beam 8 and greedy,
# and write results.md. Re-running reuses the corpus and resumes or skips training.
#
#   bash recipes/phone_menu_asr/run.sh
#
# Environment: MS2S_VENV (default ~/.venvs/ms2s), CORPUS_DIR (default cache/phone_menu),
# EXP_DIR (default exp/phone_menu_asr), NUM_TRAIN (default 7000 training utterances).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
recipe="$root/recipes/phone_menu_asr"
venv="${MS2S_VENV:-$HOME/.venvs/ms2s}"
corpus="$(realpath -m "${CORPUS_DIR:-$root/cache/phone_menu}")"
exp="$(realpath -m "${EXP_DIR:-$root/exp/phone_menu_asr}")"
num_train="${NUM_TRAIN:-7000}"
cd "$root"

bash "$recipe/install_system_packages.sh"

started=$(date +%s)
"$venv/bin/python" -m multimodal_s2s.corpora.phone_menu.prepare "$corpus" \
  --num-train "$num_train" --num-dev 300 --num-test-per-voice 250 --jobs "$(nproc)"
prepared=$(date +%s)

"$venv/bin/ms2s" train "$recipe/config.yaml" \
  "data.train=$corpus/train.jsonl" "data.dev=$corpus/dev.jsonl" \
  "data.test.test=$corpus/test.jsonl" "data.test.real_letters=$corpus/test_real_letters.jsonl" \
  "data.test.real_digits=$corpus/test_real_digits.jsonl" --out "$exp" --resume
trained=$(date +%s)

for beam in 8 1; do
  name=$([ "$beam" = 1 ] && echo greedy || echo "beam$beam")
  "$venv/bin/ms2s" evaluate --model "$exp/best.pt" --beam "$beam" \
    --splits test real_letters real_digits --report "$exp/eval_$name"
done
evaluated=$(date +%s)

"$venv/bin/python" "$recipe/summarize.py" --model "$exp/best.pt" \
  --report "beam8=$exp/eval_beam8" --report "greedy=$exp/eval_greedy" \
  --seconds "data=$((prepared - started))" --seconds "train=$((trained - prepared))" \
  --seconds "eval=$((evaluated - trained))" --out "$exp/results.md"
echo "results: $exp/results.md; per-utterance alignments: $exp/eval_*/<test set>.jsonl"
