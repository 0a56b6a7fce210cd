#!/usr/bin/env bash
# Create .venv and install jambadocs into it. Idempotent: a second run only checks.
#   bash scripts/setup.sh          the app
#   bash scripts/setup.sh --test   the app and what the tests need (pytest, playwright, Debian chromium)
# JAMBADOCS_GPU=1 also installs the fused CUDA kernels (mamba-ssm, causal-conv1d; needs nvcc).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="test"
[ "${JAMBADOCS_GPU:-0}" = "1" ] && extras="${extras:+$extras,}gpu"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# torch first: a bare "torch" requirement would otherwise pull a multi-GB CUDA build on a CPU machine.
# On a CPU machine: the CPU build, from a wheel pip finds without an index (a local wheel folder in
# pip's find-links, as on CI) and then its dependencies, else from PyTorch's CPU index (PyPI's
# Linux wheel is the CUDA build, several GB).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip install "torch>=2.5"
  elif pip install --no-index --no-deps torch==2.13.0 2>/dev/null; then
    pip install torch==2.13.0
  else
    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
stamp=".venv/.jambadocs-installed-${extras:-app}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip install -e ".${extras:+[$extras]}"
  touch "$stamp"
fi

# Browser tests drive Debian's chromium through Playwright (no browser download).
if [ "$extras" != "${extras#*test}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; browser tests will be skipped" >&2
  else
    echo "setup: /usr/bin/chromium missing (apt-get install chromium); browser tests will be skipped" >&2
  fi
fi
