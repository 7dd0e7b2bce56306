"""The schema of the offline-to-online setting's ``setting`` and ``td3`` nodes
(``conf/setting/offline_to_online.yaml``): each field's type and bounds; the values (and their
``# assumed:`` reasons) are the YAML's. Offline steps count gradient (critic) updates, online steps
environment steps; ``smoothing_T`` counts gradient updates after the switch."""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.core.config import bounded


@dataclass
class OfflineToOnlineSetting:
    """``setting`` of the offline-to-online setting."""

    name: str = bounded(doc="the setting")
    smoothing_T: int = bounded(0, doc="the ramp's length in online gradient updates")
    gap_window: int = bounded(1, doc="online environment steps in which the stability gap is measured")
    source_steps: int = bounded(1, doc="offline critic updates (td3.policy_delay per TD3+BC round)")
    source_eval_every: int = bounded(1, doc="offline updates between evaluations")
    adapt_steps: int = bounded(1, doc="online environment steps")
    eval_every: int = bounded(1, doc="online environment steps between evaluations")
    eval_episodes: int = bounded(1, doc="episodes per evaluation")
    reset_optimizer: bool = bounded(doc="a fresh optimizer state at the switch (false: the offline one's)")


@dataclass
class TD3:
    """``td3``: TD3+BC offline, TD3 online (Fujimoto & Gu 2021's names, rejax's fields)."""

    alpha: float = bounded(0.0, lo_open=True, doc="TD3+BC's BC weight: lambda = alpha / mean |Q|")
    hidden_layer_sizes: list[int] = bounded(1, doc="actor and critic hidden widths")
    activation: str = bounded(doc="actor and critic activation")
    network_init: str = bounded(choices=("torch", "rejax"), doc="torch: U(+-1/sqrt(fan_in)); rejax: lecun-normal, zero bias")
    actor_critic: str = bounded(choices=("first", "mean"), doc="the actor maximizes Q_1 (first) or the critics' mean")
    batch_size: int = bounded(1, doc="transitions per gradient update")
    policy_delay: int = bounded(1, doc="critic updates per actor update")
    target_noise: float = bounded(0.0, doc="target policy smoothing noise")
    target_noise_clip: float = bounded(0.0, doc="its clip")
    tau: float = bounded(0.0, 1.0, doc="target network Polyak rate")
    gamma: float = bounded(0.0, 1.0, doc="discount")
    learning_rate: float = bounded(0.0, lo_open=True, doc="actor and critic learning rate")
    exploration_noise: float = bounded(0.0, doc="online exploration noise")
    max_grad_norm: float = bounded(0.0, doc="gradient clipping norm")
    num_envs: int = bounded(1, doc="online environments stepped together")
    num_epochs: int = bounded(1, doc="gradient updates per online iteration")
    buffer_size: int = bounded(1, doc="online replay buffer")
    fill_buffer: int = bounded(1, doc="online steps before updates start")


SCHEMA = {"setting": OfflineToOnlineSetting, "td3": TD3}  # config node -> its schema
