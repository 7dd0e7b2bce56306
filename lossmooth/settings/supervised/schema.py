"""The schema of the supervised settings' ``setting`` node (``conf/setting/supervised.yaml``,
``pretrained_vision.yaml``): each field's type and bounds; the values (and their ``# assumed:``
reasons) are the YAML's. Steps count optimizer updates."""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.core.config import bounded

OPTIMIZERS = ("adam", "sgd")


@dataclass
class SupervisedSetting:
    """``setting`` of the supervised and pretrained-vision settings."""

    name: str = bounded(doc="the setting")
    source_steps: int = bounded(0, doc="source-phase updates")
    smoothing_T: int = bounded(0, doc="the ramp's length in updates (every schedule's T reads it)")
    adapt_steps: int = bounded(1, doc="adaptation updates")
    target_batch: int = bounded(1, doc="target (and source-phase) examples per batch")
    source_batch: int = bounded(1, doc="replayed source examples per source batch")
    replay_pool: int = bounded(1, doc="source examples kept for replay")
    optimizer: str = bounded(choices=OPTIMIZERS, doc="the optimizer of both phases")
    source_lr: float = bounded(0.0, lo_open=True, doc="source-phase learning rate")
    lr: float = bounded(0.0, lo_open=True, doc="adaptation learning rate")
    reset_optimizer: bool = bounded(doc="a fresh optimizer state at the switch (false: the source phase's)")
    eval_every: int = bounded(1, doc="updates between evaluations")
    evals_per_chunk: int = bounded(1, doc="evaluations per compiled chunk of the adaptation")
    source_evals_per_chunk: int = bounded(1, doc="evaluations per compiled chunk of the source phase")
    eval_size: int = bounded(1, doc="test examples per domain per evaluation")
    gap_window: int = bounded(1, doc="updates after the switch in which the stability gap is measured")
    split_seed: int = bounded(0, doc="fixes the split of the training set into source and target pools")
    train_fraction_source: float = bounded(0.0, 1.0, lo_open=True, doc="share of the training set in the source pool")


SCHEMA = {"setting": SupervisedSetting}  # config node -> its schema
