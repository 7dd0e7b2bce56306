"""Normalized scores: 100 * (return - random) / (expert - random).

The references are the mean episode returns of a random and of an expert policy on the task. D4RL's
published constants (``d4rl/infos.py``: ``REF_MIN_SCORE`` / ``REF_MAX_SCORE``, the same for every
dataset of one environment) are used only for D4RL's own datasets; our own datasets carry our own
references in their metadata (measured at collection), and Minari's D4RL datasets carry theirs.
"""
from __future__ import annotations

import numpy as np

from lossmooth.errors import ConfigError

# d4rl/infos.py, by environment (MuJoCo locomotion v0-v2, AntMaze success 0/1, Adroit v0/v1)
D4RL_REF = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331017826877),
    "hammer": (-274.856578, 12794.134825),
    "door": (-45.80706836, 2940.5785),
    "relocate": (-6.425911, 4233.877797),
}


def d4rl_reference(dataset_name: str) -> tuple[float, float]:
    """D4RL's (random, expert) returns for a D4RL dataset name such as ``hopper-medium-v2``."""
    env = dataset_name.replace("_", "-").split("-")[0].lower()
    if env not in D4RL_REF:
        raise ConfigError(f"dataset.name: no D4RL reference scores for '{dataset_name}'; known environments: "
                          f"{', '.join(D4RL_REF)} (set dataset.ref_scores: [random, expert] for others)")
    return D4RL_REF[env]


def normalized(returns, ref: tuple[float, float]) -> np.ndarray:
    """D4RL's normalized score in percent (0 = random, 100 = expert)."""
    lo, hi = float(ref[0]), float(ref[1])
    if not hi > lo:
        raise ConfigError(f"dataset reference scores: expert ({hi}) must exceed random ({lo})")
    return 100.0 * (np.asarray(returns, np.float64) - lo) / (hi - lo)
