"""Extract rejax's tuned preset files (configs/) from its source distribution on the package index.

    python scripts/prepare_rejax_presets.py [--dest DIR]

The rejax wheel omits configs/; the sdist of the pinned version carries them. The files land in
``~/.cache/lossmooth/rejax-<version>/configs`` (or ``$LOSSMOOTH_REJAX_PRESETS`` / ``--dest``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lossmooth.rl.presets import REJAX_VERSION, default_dir  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", default=default_dir())
    a = p.parse_args()
    dest = os.path.expanduser(a.dest)
    if os.path.isdir(os.path.join(dest, "brax")):
        print(f"rejax presets already at {dest}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                        ":all:", f"rejax=={REJAX_VERSION}", "-d", tmp], check=True)
        sdist = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tar.gz"))
        with tarfile.open(sdist) as tf:
            members = [m for m in tf.getmembers()
                       if "/configs/" in m.name and m.name.endswith(".yaml") and m.isfile()]
            tf.extractall(tmp, members=members, filter="data")
        src = os.path.join(tmp, f"rejax-{REJAX_VERSION}", "configs")
        staging = dest + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(src, staging)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(staging, dest)  # appears whole or not at all
    print(f"rejax {REJAX_VERSION} presets -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
