"""Setting 4: online RL (rejax TD3 and PPO on brax) adapting from a source task to a shifted target task.

- ``config.py``: the config, validated (``conf/setting/online_rl.yaml``; steps are environment steps);
- ``objective.py``: ``L_S`` and ``L_T``, the algorithm's loss on source-task and on target-task data,
  and the agents that train with them;
- ``setting.py``: the phases the shared runner runs, one line per algorithm.

The RL pieces this setting shares with offline-to-online RL live in :mod:`lossmooth.rl`.

The setting itself is ``setting.SETTING``; this package imports nothing, so reading the setting's
schema (``schema.py``) does not load its libraries.
"""
