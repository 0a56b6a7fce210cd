#!/usr/bin/env bash
# Set up (if needed) and start the app at http://127.0.0.1:7860. Extra arguments go to `jambadocs serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/jambadocs serve "$@"
