#!/usr/bin/env bash
# Scene captioning recipe, end to end: install the corpus' Debian packages (as root), draw the
# scene corpus and its independently composited dev and test splits, train a Show-Attend-Tell
# model, evaluate dev, test and the independent splits with beam 5, caption a
# few test images with attention maps and the real photos with a stamp pasted in
# (assets/photo-*.jpg), measure captioning throughput, and write the results.
#
#   bash recipes/scenes_captioning/run.sh [dotted config overrides...]
#
# Environment: MS2S_VENV (default ~/.venvs/ms2s), SCENES_COMPOSITION (how the training scenes
# are drawn: mixed, the default, the first half classic and the rest varied, dev and test
# classic; classic, multimodal_s2s/corpora/scenes/render.py; or varied,
# multimodal_s2s/corpora/scenes/varied.py), SCENES_CACHE (corpus folder, default
# cache/scenes-mixed, cache/scenes or cache/scenes-varied), SCENES_OUT (run folder, default
# exp/scenes_captioning, exp/scenes_captioning-classic or exp/scenes_captioning-varied),
# PROCESSES (data-parallel training processes without a GPU, default 2).
# Re-running reuses the cached corpus and resumes or reuses training.
set -euo pipefail
recipe="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$recipe/../.."
venv="${MS2S_VENV:-$HOME/.venvs/ms2s}"
# Each composition has its own corpus and run folders, so they never mix (prepare also
# refuses to draw one into a folder holding another). The mixed and varied paths choose
# checkpoints on dev_mixed.jsonl: dev and independent_dev, scenes composited both ways
# (mixed: the most independently composited objects named; experiments.md, "Issue 40").
composition="${SCENES_COMPOSITION:-mixed}"
case "$composition" in
  mixed) cache="${SCENES_CACHE:-cache/scenes-mixed}" out="${SCENES_OUT:-exp/scenes_captioning}"
    select_dev=dev_mixed.jsonl ;;
  classic) cache="${SCENES_CACHE:-cache/scenes}"
    out="${SCENES_OUT:-exp/scenes_captioning-classic}" select_dev=dev.jsonl ;;
  varied) cache="${SCENES_CACHE:-cache/scenes-varied}"
    out="${SCENES_OUT:-exp/scenes_captioning-varied}" select_dev=dev_mixed.jsonl ;;
  *) echo "error: SCENES_COMPOSITION must be mixed, classic or varied, got '$composition'" >&2
    exit 1 ;;
esac
# One intra-op thread per process: two threads plus the image-loading worker on 2 cores run
# several times slower than one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Without a GPU, train with PROCESSES torchrun processes (gloo) that split each global batch of
# config.yaml's batch_size images: on a 2-core CPU two single-threaded processes train faster
# than one (measured in experiments.md). With a GPU, one process.
if "$venv/bin/python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  processes=1
else
  processes="${PROCESSES:-2}"
fi
# config.yaml trains and decodes in bfloat16 autocast (train.cpu_bfloat16,
# search.cpu_bfloat16), faster on a CPU with bfloat16 instructions and slower than float32 on
# one without: there, train and decode in float32.
if "$venv/bin/python" -c 'import sys
from multimodal_s2s.cpu import has_bfloat16_instructions
sys.exit(not has_bfloat16_instructions())'; then
  precision=()
else
  precision=(train.cpu_bfloat16=false search.cpu_bfloat16=false)
fi
# The global batch and the image size the corpus is drawn at, from the config with the
# command line's overrides (so that `run.sh data.image_size=80` draws 80-pixel scenes).
sizes=$("$venv/bin/python" -c "import sys
from multimodal_s2s.config import load_config
from multimodal_s2s.errors import InputError
try:
    config = load_config('$recipe/config.yaml', sys.argv[1:])
except InputError as error:
    sys.exit(f'error: {error}')
print(config.train.batch_size, config.data.image_size)" "$@")
read -r global_batch image_size <<< "$sizes"
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
  --image-size "$image_size" --num-train 40000 --num-dev 500 --num-test 1000 --jobs 2 \
  --num-independent-dev 500 --num-independent-test 1000 --composition "$composition"
step train "$venv/bin/python" -m torch.distributed.run --standalone \
  --nproc_per_node="$processes" -m multimodal_s2s.cli train "$recipe/config.yaml" \
  "data.train=$cache/train.jsonl" "data.dev=$cache/$select_dev" "data.test.test=$cache/test.jsonl" \
  "train.batch_size=$((global_batch / processes))" "${precision[@]}" "$@" --out "$out" --resume
# dev and test, and the independently composited splits (other backgrounds, sizes, placement,
# edges, shadows and lighting; multimodal_s2s/corpora/scenes/independent.py) on their pairs;
# dev is the corpus' own (not the mixed set the varied path chose checkpoints on).
step evaluate "$venv/bin/ms2s" evaluate --model "$out/best.pt" --beam 5 --report "$out/report" \
  --splits dev test independent_dev independent_test "data.dev=$cache/dev.jsonl" \
  "data.test.independent_dev=$cache/independent_dev.jsonl" \
  "data.test.independent_test=$cache/independent_test.jsonl"
demo=("$cache"/images/test/test-00000[0-7].jpg)
step caption "$venv/bin/ms2s" caption --model "$out/best.pt" "${demo[@]}" --beam 5 \
  --output "$out/demo_captions.jsonl" --attention-maps "$out/attention_maps"
# Real photographs with one stamp pasted in by hand (assets/README.md): does the model name
# the object outside the corpus' drawings? write_results.py sets each caption against it.
step photos "$venv/bin/ms2s" caption --model "$out/best.pt" assets/photo-*.jpg --beam 5 \
  --output "$out/photo_captions.jsonl"
step throughput "$venv/bin/python" benchmarks/caption_throughput.py --model "$out/best.pt" \
  --threads "$(getconf _NPROCESSORS_ONLN)" --output "$out/throughput.json"
"$venv/bin/python" "$recipe/write_results.py" "$out"
