#!/usr/bin/env bash
# Scene captioning recipe, end to end: install the corpus' Debian packages (as root), draw the
# scene corpus, train a Show-Attend-Tell model, evaluate dev and test with beam 5, caption a
# few test images with attention maps, measure captioning throughput, and write the results.
#
#   bash recipes/scenes_captioning/run.sh [dotted config overrides...]
#
# Environment: MS2S_VENV (default ~/.venvs/ms2s), SCENES_CACHE (corpus folder, default
# cache/scenes under the repository root), SCENES_OUT (run folder, default
# exp/scenes_captioning). Re-running reuses the cached corpus and resumes or reuses training.
set -euo pipefail
recipe="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$recipe/../.."
venv="${MS2S_VENV:-$HOME/.venvs/ms2s}"
cache="${SCENES_CACHE:-cache/scenes}"
out="${SCENES_OUT:-exp/scenes_captioning}"
# One intra-op thread: the image-loading worker takes the other core (two threads plus the
# worker on 2 cores run several times slower than one thread).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$out"
timings="$out/timings.tsv"
: > "$timings"
step() {  # step NAME COMMAND...: run a command, record its start and end time (seconds)
  local name="$1" started="$EPOCHREALTIME"
  shift
  "$@"
  printf '%s\t%s\t%s\n' "$name" "$started" "$EPOCHREALTIME" >> "$timings"
}

step packages bash "$recipe/install_system_packages.sh"
step data "$venv/bin/python" -m multimodal_s2s.corpora.scenes.prepare "$cache" \
  --image-size 64 --num-train 40000 --num-dev 500 --num-test 1000 --jobs 2
step train "$venv/bin/ms2s" train "$recipe/config.yaml" \
  "data.train=$cache/train.jsonl" "data.dev=$cache/dev.jsonl" "data.test.test=$cache/test.jsonl" \
  "$@" --out "$out" --resume
step evaluate "$venv/bin/ms2s" evaluate --model "$out/best.pt" --beam 5 --report "$out/report"
demo=("$cache"/images/test/test-00000[0-7].jpg)
step caption "$venv/bin/ms2s" caption --model "$out/best.pt" "${demo[@]}" --beam 5 \
  --output "$out/demo_captions.jsonl" --attention-maps "$out/attention_maps"
step throughput "$venv/bin/python" benchmarks/caption_throughput.py --model "$out/best.pt" \
  --output "$out/throughput.json"
"$venv/bin/python" "$recipe/write_results.py" "$out"
