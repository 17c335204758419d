#!/usr/bin/env bash
# Install the Debian TTS voices and recordings the phone-menu corpus is built from (see
# multimodal_s2s/corpora/phone_menu/system_packages.txt). mbrola, its voices and RHVoice are
# in Debian's non-free component, pico and most festival voices in contrib: they are enabled
# with one extra deb822 source next to the main one. Does nothing (no apt call) when every
# package is installed; as a non-root user it only reports what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
packages=$(grep -v '^#' "$root/multimodal_s2s/corpora/phone_menu/system_packages.txt")
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $packages 2>/dev/null | grep -c ' installed$' || true)
[ "$installed" = "$(echo "$packages" | wc -w)" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "warning: not root, cannot install missing TTS packages; the corpus uses the voices" \
    "that are installed (list: multimodal_s2s/corpora/phone_menu/system_packages.txt)" >&2
  exit 0
fi
extra=/etc/apt/sources.list.d/debian-contrib-nonfree.sources
components=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E '^(deb |Components:)' || true)
if ! echo "$components" | grep -qw contrib || ! echo "$components" | grep -qE 'non-free( |$)'; then
  . /etc/os-release
  cat > "$extra" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $VERSION_CODENAME $VERSION_CODENAME-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
