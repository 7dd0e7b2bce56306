"""The schema of the LM setting's ``setting`` and ``lm_budget`` nodes (``conf/setting/lm.yaml`` and
the ``lm/budget`` group): each field's type and bounds; the values (and their ``# assumed:`` reasons)
are the YAML's. Steps count updates (each of ``lm_budget.accum`` micro-batches)."""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.core.config import bounded


@dataclass
class LMSetting:
    """``setting`` of the LM setting (no source phase: the model arrives pretrained)."""

    adapt_steps: int = bounded(1, doc="updates")
    eval_every: int = bounded(1, doc="updates between evaluations")
    evals_per_chunk: int = bounded(1, doc="evaluations per compiled chunk")
    smoothing_T: int = bounded(0, doc="the ramp's length in updates")
    gap_window: int = bounded(1, doc="updates after the switch in which the stability gap is measured")
    name: str = bounded(doc="the setting")
    heldout_fraction: float = bounded(0.0, 0.5, lo_open=True, doc="share of conversations / documents held out")
    cross_document_attention: bool = bounded(doc="whether packed documents attend to each other")
    split_salt: str = bounded(doc="salt of the held-out split's hash")


@dataclass
class LMBudget:
    """``lm_budget``: the shapes of an update and the optimizer."""

    seq_len: int = bounded(8, doc="packed sequence length in tokens")
    micro_batch: int = bounded(1, doc="target rows per micro-batch (the replay micro-batch has as many)")
    accum: int = bounded(1, doc="micro-batches per update")
    warmup: int = bounded(0, doc="learning-rate warmup updates")
    lr: float = bounded(0.0, lo_open=True, doc="peak learning rate")
    final_lr_fraction: float = bounded(0.0, 1.0, doc="the cosine decay's end, as a share of lr")
    weight_decay: float = bounded(0.0, doc="AdamW weight decay")
    max_grad_norm: float = bounded(0.0, doc="gradient clipping norm")
    eval_rows: int = bounded(1, doc="held-out packed rows per evaluation (target and replay each)")
    eval_micro_batch: int = bounded(1, doc="rows per evaluation pass (memory only)")


SCHEMA = {"setting": LMSetting, "lm_budget": LMBudget}  # config node -> its schema
