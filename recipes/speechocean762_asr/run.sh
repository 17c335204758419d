#!/usr/bin/env bash
# Speech recognition on real human speech (speechocean762: read English by non-native
# children and adults), end to end: import the corpus's Kaldi folders and FSDD, hold out
# whole training speakers as dev, pretrain a Listen-Attend-Spell model on the phone-menu TTS
# corpus (its attention learns to align there), fine-tune it on the real recordings (and, on
# request, TTS copies of their sentences), train a character language model of the training
# transcripts, evaluate with beam search (fused with it) and greedy on
# speechocean762 test, on every FSDD recording and on the human letters and digits, and write
# results.md. A re-run reuses the manifests and the synthesised audio and resumes or skips
# each training.
#
#   bash recipes/speechocean762_asr/run.sh
#
# Environment: SPEECHOCEAN762_DIR and FSDD_DIR (the corpora; default ../shared/corpora/<name>
# beside the repository), CACHE_DIR (default cache/speechocean762), PHONE_MENU_DIR (the
# phone-menu corpus, shared with recipes/phone_menu_asr; default cache/phone_menu), EXP_DIR
# (default exp/speechocean762_asr; the pretraining run goes to EXP_DIR.pretrain, the language
# model to EXP_DIR.lm),
# PHONE_MENU_SIZES (default "--num-train 7000 --num-dev 300 --num-test-per-voice 250"),
# PRETRAIN_EPOCHS (default 8), TTS_VOICES_PER_SENTENCE (TTS copies of each training
# sentence added to the fine-tuning data; default 0: they did not help, experiments.md),
# DEV_CHILDREN and DEV_ADULTS (dev speakers, default 6 each), INSTALL_PACKAGES (default 1:
# install the TTS voices and recordings as root; 0 skips apt), MS2S_VENV (default
# ~/.venvs/ms2s). Arguments
# are dotted overrides of both trainings (encoder.hidden_dim=256), but train.epochs only
# changes the fine-tuning (PRETRAIN_EPOCHS sets the pretraining's).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
recipe="$root/recipes/speechocean762_asr"
venv="${MS2S_VENV:-$HOME/.venvs/ms2s}"
corpora="$(realpath -m "$root/../shared/corpora")"
so762="$(realpath -m "${SPEECHOCEAN762_DIR:-$corpora/speechocean762}")"
fsdd="$(realpath -m "${FSDD_DIR:-$corpora/fsdd}")"
cache="$(realpath -m "${CACHE_DIR:-$root/cache/speechocean762}")"
phone_menu="$(realpath -m "${PHONE_MENU_DIR:-$root/cache/phone_menu}")"
exp="$(realpath -m "${EXP_DIR:-$root/exp/speechocean762_asr}")"
voices_per_sentence="${TTS_VOICES_PER_SENTENCE:-0}"

if [ ! -f "$so762/train/wav.scp" ] || [ ! -f "$so762/test/wav.scp" ]; then
  echo "error: speechocean762 not found in $so762: download it from https://www.openslr.org/101/ and set SPEECHOCEAN762_DIR to the folder holding train/ and test/" >&2
  exit 1
fi
if ! compgen -G "$fsdd/recordings/*.wav" > /dev/null; then
  echo "error: the Free Spoken Digit Dataset not found in $fsdd: git clone https://github.com/Jakobovski/free-spoken-digit-dataset and set FSDD_DIR to it" >&2
  exit 1
fi
cd "$root"
[ "${INSTALL_PACKAGES:-1}" = 0 ] || bash "$root/recipes/phone_menu_asr/install_system_packages.sh"

started=$(date +%s)
mkdir -p "$cache"
for part in train test; do
  [ -s "$cache/$part.all.jsonl" ] || "$venv/bin/ms2s" import kaldi "$so762/$part" "$cache/$part.all.jsonl"
done
[ -s "$cache/fsdd.jsonl" ] || "$venv/bin/ms2s" import fsdd "$fsdd" "$cache/fsdd.jsonl"
"$venv/bin/python" "$recipe/split_dev.py" "$cache/train.all.jsonl" "$cache/train.jsonl" \
  "$cache/dev.jsonl" --children "${DEV_CHILDREN:-6}" --adults "${DEV_ADULTS:-6}"
train_manifest="$cache/train.jsonl"
if [ "$voices_per_sentence" -gt 0 ]; then
  "$venv/bin/python" -c 'import json, sys
for line in sys.stdin: print(json.loads(line)["text"])' < "$cache/train.jsonl" > "$cache/train_texts.txt"
  "$venv/bin/python" -m multimodal_s2s.corpora.phone_menu.prepare "$cache/tts" \
    --texts "$cache/train_texts.txt" --num-test-per-voice 0 --num-dev 0 --jobs "$(nproc)" \
    --num-train "$(( $(wc -l < "$cache/train_texts.txt") * voices_per_sentence ))"
  cat "$cache/train.jsonl" "$cache/tts/train.jsonl" > "$cache/train_with_tts.jsonl"
  train_manifest="$cache/train_with_tts.jsonl"
fi
# the phone-menu recipe's corpus sizes, so that both recipes share one cache
read -r -a phone_menu_sizes <<< "${PHONE_MENU_SIZES:---num-train 7000 --num-dev 300 --num-test-per-voice 250}"
"$venv/bin/python" -m multimodal_s2s.corpora.phone_menu.prepare "$phone_menu" \
  "${phone_menu_sizes[@]}" --jobs "$(nproc)"
prepared=$(date +%s)

# the human letters and digit strings of Debian's klettres-data and pocketsphinx-testdata
tests=(test fsdd)
test_sets=("data.test.test=$cache/test.all.jsonl" "data.test.fsdd=$cache/fsdd.jsonl")
for name in real_letters real_digits; do
  if [ -s "$phone_menu/test_$name.jsonl" ]; then
    tests+=("$name")
    test_sets+=("data.test.$name=$phone_menu/test_$name.jsonl")
  fi
done

"$venv/bin/ms2s" train "$root/recipes/phone_menu_asr/config.yaml" \
  "data.train=$phone_menu/train.jsonl" "data.dev=$phone_menu/dev.jsonl" "data.test={}" \
  "$@" "train.epochs=${PRETRAIN_EPOCHS:-8}" --out "$exp.pretrain" --resume
pretrained=$(date +%s)

"$venv/bin/ms2s" train "$recipe/config.yaml" "data.train=$train_manifest" \
  "data.dev=$cache/dev.jsonl" "${test_sets[@]}" "train.init_from=$exp.pretrain/best.pt" "$@" \
  --out "$exp" --resume
trained=$(date +%s)

# A character language model of the real training transcripts (lm.yaml), fused into the
# beam search at weight 0.2 (chosen on dev, experiments.md item 6); greedy decodes without.
"$venv/bin/ms2s" train-lm "$recipe/lm.yaml" --out "$exp.lm" "data.train=$cache/train.jsonl" \
  "data.dev=$cache/dev.jsonl" "data.vocabulary_from=$exp/best.pt" --resume
lm_trained=$(date +%s)

for beam in 8 1; do
  name=$([ "$beam" = 1 ] && echo greedy || echo "beam$beam")
  fusion=()
  [ "$beam" = 1 ] || fusion=("search.lm=$exp.lm/best.pt" "search.lm_weight=0.2")
  "$venv/bin/ms2s" evaluate --model "$exp/best.pt" --beam "$beam" --splits "${tests[@]}" \
    "${fusion[@]}" --report "$exp/eval_$name"
done
evaluated=$(date +%s)

"$venv/bin/python" "$recipe/write_results.py" --out "$exp/results.md" \
  --report "beam8=$exp/eval_beam8" --report "greedy=$exp/eval_greedy" \
  --ages "$cache/test.all.jsonl" --seconds "data=$((prepared - started))" \
  --seconds "pretrain=$((pretrained - prepared))" --seconds "train=$((trained - pretrained))" \
  --seconds "lm=$((lm_trained - trained))" --seconds "eval=$((evaluated - lm_trained))"
echo "results: $exp/results.md; per-utterance alignments: $exp/eval_*/<test set>.jsonl"
