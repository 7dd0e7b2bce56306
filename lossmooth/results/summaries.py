"""Per-run summaries of the curves around the switch.

With evaluations at adaptation steps s_0 = 0 (the switch), s_1, ..., s_n, target accuracy a_i and
source accuracy b_i:

- ``final_target_acc``  = a_n
- ``source_acc_after``  = b_n                        (source ability left after adaptation)
- ``forgetting``        = b_0 - b_n                  (source accuracy lost by adapting)
- ``worst_target_acc``  = min { a_i : 0 < s_i <= W } (W = gap window: just after the switch)
- ``stability_gap``     = max(0, a_0 - worst_target_acc)  (drop below the value at the switch)
- ``auc_target``        = trapezoid area under a(s) over [0, s_n], divided by s_n (a mean accuracy)
"""
from __future__ import annotations

import numpy as np

METRICS = ("final_target_acc", "source_acc_after", "forgetting", "worst_target_acc",
           "stability_gap", "auc_target")
HIGHER_IS_BETTER = {"final_target_acc": True, "source_acc_after": True, "forgetting": False,
                    "worst_target_acc": True, "stability_gap": False, "auc_target": True}


def summarize(steps: np.ndarray, target_acc: np.ndarray, source_acc: np.ndarray,
              gap_window: int) -> dict:
    """Summaries of one run's curves (``steps[0]`` must be the switch, step 0)."""
    steps = np.asarray(steps, np.float64)
    a = np.asarray(target_acc, np.float64)
    b = np.asarray(source_acc, np.float64)
    window = (steps > 0) & (steps <= gap_window)
    if not window.any():  # the first evaluation after the switch is beyond the window
        window = steps == steps[steps > 0].min()
    worst = float(a[window].min())
    span = steps[-1] - steps[0]
    area = np.sum((a[1:] + a[:-1]) * np.diff(steps)) / 2.0
    return {
        "final_target_acc": float(a[-1]),
        "source_acc_after": float(b[-1]),
        "forgetting": float(b[0] - b[-1]),
        "worst_target_acc": worst,
        "stability_gap": float(max(0.0, a[0] - worst)),
        "auc_target": float(area / span) if span > 0 else float(a[-1]),
    }
