"""Setting 2: pretrained vision adaptation (DomainNet on the paper path; digit domains here).

- ``objective.py``: ``L_S`` and ``L_T``, cross-entropy on the source and the target domain (the
  supervised setting's objective, with LP-FT among the methods);
- ``setting.py``: the supervised setting's phases on a domain pair with an ImageNet-pretrained
  backbone (config: ``conf/setting/pretrained_vision.yaml``, validated by the supervised config).

The setting itself is ``setting.SETTING``; this package imports nothing, so reading the setting's
schema (``schema.py``) does not load its libraries.
"""
