#!/usr/bin/env bash
# GPU check: training tokens/s (ours against padded model.fit), decode ms/token and peak
# GPU memory, printed as one JSON line on stdout (progress on stderr); at most 8 minutes on
# one GPU. scripts/device_check.py does the work and says what each figure is.
#
#   bash scripts/device_check.sh                  # on a GPU machine, after pip install -e .
#   bash scripts/device_check.sh --cpu-dry-run    # the same run on the CPU, tiny, < 1 minute
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
else
    python=python3
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$python" scripts/device_check.py "$@"
