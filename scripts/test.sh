#!/usr/bin/env bash
# Install lossmooth with its test dependencies, check the layer contract, then run the test suite
# (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
lint-imports --no-cache
export WANDB_MODE=disabled
# byte-compile the package and the tests once: the suite starts about a hundred Python processes (workers,
# `lossmooth` subprocesses), and where PYTHONDONTWRITEBYTECODE is set each would compile them again
python3 -m compileall -q lossmooth tests benchmarks scripts > /dev/null
# two workers, each test file whole in one of them (its module fixtures built once): XLA compiles one
# program per thread, so two files compile side by side on two cores
python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
