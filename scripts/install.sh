#!/usr/bin/env bash
# Install lossmooth and the embedded default's data on a Debian-family machine.
#   bash scripts/install.sh          # the library + Fashion-MNIST (Debian package dataset-fashion-mnist)
#   bash scripts/install.sh dev      # + test dependencies (and the tensorflow-datasets paper path)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extra:+[$extra]}"
