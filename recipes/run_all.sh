#!/usr/bin/env bash
# The main job: the speech recognition recipe, then the captioning recipe, each end to end
# (data from Debian packages, training, evaluation, results in exp/*/). Needs root for the
# Debian packages the first time. About 30-35 minutes on an idle 2-core CPU with AVX512-BF16:
# 29.5 minutes from a fresh clone and an empty cache with the speech recipe's convolution
# block (29.3 and 29.9 minutes in two runs before it, all on 2026-11-26, setup.sh included, its
# venv already built), 34.2 minutes on 2026-11-24. About 75 minutes on a 2-core host with AVX2
# only (2026-12-04: 37.8 and 37.3 minutes for the two recipes; their READMEs).
set -euo pipefail
recipes="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$recipes/phone_menu_asr/run.sh"
bash "$recipes/scenes_captioning/run.sh"
