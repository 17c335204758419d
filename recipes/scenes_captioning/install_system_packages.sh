#!/usr/bin/env bash
# Install the Debian packages the scene corpus is drawn from (tuxpaint stamps, MATE
# backgrounds; KDE, GNOME and UKUI wallpapers for the independent test splits; the varied
# composition's wallpapers, photos and textures), as listed in
# multimodal_s2s/corpora/scenes/system_packages.txt.
# Returns at once when they are installed; installs them when run as root; otherwise fails
# with the command to run.
set -euo pipefail
list="$(dirname "${BASH_SOURCE[0]}")/../../multimodal_s2s/corpora/scenes/system_packages.txt"
mapfile -t packages < <(grep -v '^\s*\(#\|$\)' "$list")
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
