"""What batch invariance costs: the supervised default's adaptation with its batches run in blocks of
``lanes`` runs (the setting's ``lanes``, :data:`lossmooth.core.engine.LANES`) against one plain vmap of
the whole batch (``lanes = 1``, the layout before, with its source-free program from the end of the
ramps), for a 16-run job (8 seeds x 2 methods: two blocks) and a 2-run job (one seed: padded to two blocks).

    python benchmarks/lanes.py [--adapt-steps 100] [--seeds 8]

Prints the adaptation's wall seconds (compile included, as a user waits for it; a fresh process per
job, the compilation cache off) and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from lossmooth.runner import run_config
from lossmooth.runner.compose import compose
from lossmooth.settings.supervised.setting import Supervised
Supervised.lanes = {lanes}
cfg = compose({overrides!r})
cfg["results_dir"], cfg["cache_dir"] = {out!r}, None
path = run_config(cfg, {{}}, progress=False)
print(json.dumps(json.load(open(path + "/summary.json"))["wall_s"]))
"""


def adapt_seconds(lanes: int, seeds: int, adapt_steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"num_seeds={seeds}", f"setting.adapt_steps={adapt_steps}", "setting.source_steps=50",
                     "setting.source_evals_per_chunk=5", "logger=jsonl", "progress=false"]
        code = CHILD.format(root=ROOT, lanes=lanes, overrides=overrides, out=out)
        env = dict(os.environ, WANDB_MODE="disabled")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        return float(json.loads(r.stdout.strip().splitlines()[-1])["adapt"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapt-steps", type=int, default=100)
    p.add_argument("--seeds", type=int, default=8)
    a = p.parse_args(argv)
    from lossmooth.core.engine import LANES

    for seeds in (a.seeds, 1):
        blocked = adapt_seconds(LANES, seeds, a.adapt_steps)
        plain = adapt_seconds(1, seeds, a.adapt_steps)
        print(f"{2 * seeds} runs, {a.adapt_steps} adaptation updates: blocks of {LANES} lanes {blocked:.1f} s, "
              f"one plain vmap {plain:.1f} s: {blocked / plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
