#!/usr/bin/env bash
# Install lossmooth and the embedded default's data on a Debian-family machine.
#   bash scripts/install.sh          # the library + Fashion-MNIST (Debian package dataset-fashion-mnist)
#   bash scripts/install.sh rl       # + the RL settings (brax, rejax, gymnasium, minari) and rejax's presets
#   bash scripts/install.sh dev      # + test dependencies (the RL settings and the tensorflow-datasets paper path)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extra:+[$extra]}"
if [ "$extra" = "rl" ] || [ "$extra" = "dev" ]; then
  # rejax's tuned presets ship in its source distribution only (taken from the package index)
  python3 scripts/prepare_rejax_presets.py >/dev/null
fi
