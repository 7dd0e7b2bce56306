"""Setting 1: controlled supervised shifts (covariate and label shifts on image classification).

- ``config.py``: the config, validated (``conf/setting/supervised.yaml``);
- ``data.py``: source and target pools, the replay pool and both domains' evaluation sets;
- ``objective.py``: ``L_S`` (cross-entropy on replayed source examples) and ``L_T`` (cross-entropy on
  the shifted target data), the per-run updates and the evaluation;
- ``setting.py``: the compiled programs and the phases the shared runner runs.

The setting itself is ``setting.SETTING``; this package imports nothing, so reading the setting's
schema (``schema.py``) does not load its libraries.
"""
