"""Setting 3: offline-to-online RL, TD3+BC -> TD3 (the paper's protocol).

- ``config.py``: the config, validated (``conf/setting/offline_to_online.yaml``);
- ``data.py``: the offline dataset (our own collection, Minari or D4RL) and its reference returns;
- ``objective.py``: ``L_S`` (TD3+BC on offline batches) and ``L_T`` (TD3 on online batches), the agent,
  the controls' per-run numbers and the offline phase's training;
- ``setting.py``: the phases the shared runner runs.

The setting itself is ``setting.SETTING``; this package imports nothing, so reading the setting's
schema (``schema.py``) does not load its libraries.
"""
