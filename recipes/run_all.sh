#!/usr/bin/env bash
# The main job: the speech recognition recipe, then the captioning recipe, each end to end
# (data from Debian packages, training, evaluation, results in exp/*/). Needs root for the
# Debian packages the first time. How long it takes on which CPU: README.md, "Results".
set -euo pipefail
recipes="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$recipes/phone_menu_asr/run.sh"
bash "$recipes/scenes_captioning/run.sh"
