#!/usr/bin/env bash
# The main job: the speech recognition recipe on built-in TTS speech, the captioning recipe,
# and, when the real speech corpora are on this machine, the speechocean762 recipe (real
# human speech), each end to end (data, training, evaluation, results in exp/*/). Needs root
# for the Debian packages the first time. How long it takes on which CPU: README.md, "Results".
set -euo pipefail
recipes="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
corpora="$(realpath -m "$recipes/../../shared/corpora")"
bash "$recipes/phone_menu_asr/run.sh"
bash "$recipes/scenes_captioning/run.sh"
if [ -f "${SPEECHOCEAN762_DIR:-$corpora/speechocean762}/train/wav.scp" ] &&
  compgen -G "${FSDD_DIR:-$corpora/fsdd}/recordings/*.wav" > /dev/null; then
  bash "$recipes/speechocean762_asr/run.sh"
else
  echo "skipped recipes/speechocean762_asr (real speech): download speechocean762" \
    "(https://www.openslr.org/101/) and FSDD (https://github.com/Jakobovski/free-spoken-digit-dataset)," \
    "then set SPEECHOCEAN762_DIR and FSDD_DIR and run bash recipes/speechocean762_asr/run.sh"
fi
