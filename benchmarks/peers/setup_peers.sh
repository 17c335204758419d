#!/usr/bin/env bash
# The peers' virtual environment for benchmarks/peers/: SpeechBrain and pocketsphinx, never
# dependencies of the project nor installed into its venv. The peers' venv lives at
# $MS2S_PEERS_VENV (default ~/.venvs/ms2s-peers) and sees the project's venv
# ($MS2S_VENV, default ~/.venvs/ms2s, made by scripts/setup.sh) through a .pth file, so both
# sides of a benchmark run on the same torch in one process and pip does not download a
# second torch. The benchmark scripts run this on their first run; later runs are no-ops.
set -euo pipefail
project="${MS2S_VENV:-$HOME/.venvs/ms2s}"
peers="${MS2S_PEERS_VENV:-$HOME/.venvs/ms2s-peers}"
packages=(speechbrain==1.1.2 pocketsphinx==5.1.1)

if [ ! -x "$project/bin/python" ]; then
  echo "no project venv at $project: run scripts/setup.sh first (or set MS2S_VENV)" >&2
  exit 1
fi
stamp="$peers/.ms2s-peers-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$project ${packages[*]}" ]; then
  exit 0
fi
site="$("$project/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[ -x "$peers/bin/python" ] || "$project/bin/python" -m venv "$peers"
peers_site="$("$peers/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# addsitedir (not a bare path line) also runs the project venv's own .pth files
echo "import site; site.addsitedir('$site')" >"$peers_site/ms2s_project_venv.pth"
"$peers/bin/python" -c 'import torch' || {
  echo "the peers' venv at $peers does not see torch from $site" >&2
  exit 1
}
echo "installing ${packages[*]} into $peers" >&2
"$peers/bin/pip" install -q "${packages[@]}" >&2
# torch must still be the project's: the peers are measured against the same build
"$peers/bin/python" - "$site" <<'EOF'
import sys

import torch

if not torch.__file__.startswith(sys.argv[1]):
    sys.exit(f"pip put another torch into the peers' venv: {torch.__file__}")
EOF
echo "$project ${packages[*]}" >"$stamp"
echo "peers' environment ready: $peers" >&2
