"""The schema of the online RL setting's ``setting`` node (``conf/setting/online_rl.yaml`` and the
``budget`` group): each field's type and bounds; the values (and their ``# assumed:`` reasons) are
the YAML's. Steps count environment steps; ``smoothing_T`` counts gradient updates."""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.core.config import bounded


@dataclass
class OnlineRLSetting:
    """``setting`` of the online RL setting; a null step count is each algorithm's own (``budget.<algo>``)
    or its rejax preset's."""

    source_steps: int | None = bounded(1, doc="source-task environment steps")
    adapt_steps: int | None = bounded(1, doc="target-task environment steps")
    eval_every: int | None = bounded(1, doc="environment steps between evaluations")
    eval_episodes: int = bounded(1, doc="episodes per evaluation")
    name: str = bounded(doc="the setting")
    presets_dir: str | None = bounded(doc="rejax's preset folder (null: $LOSSMOOTH_REJAX_PRESETS or the cache)")
    smoothing_T: int = bounded(0, doc="the ramp's length in gradient updates after the shift")
    gap_window: int = bounded(1, doc="target-task steps after the shift in which the stability gap is measured")
    reset_optimizer: bool = bounded(doc="fresh optimizer states at the switch")


SCHEMA = {"setting": OnlineRLSetting}  # config node -> its schema
