"""Setting 5: language-model fine-tuning with pretraining replay (OLMo-1B on the paper path,
SmolLM2-135M-Instruct here).

- ``config.py``: the config, validated (``conf/setting/lm.yaml`` and its groups);
- ``data.py``: the packed target and replay rows, held-out rows and the judge's prompts;
- ``objective.py``: ``L_S`` (next-token loss on replay text) and ``L_T`` (SFT loss on chat transcripts)
  in one compiled update with gradient accumulation, and the evaluation;
- ``judge.py``: every run's replies judged pairwise against the reference run's;
- ``setting.py``: the phases the shared runner runs (one run per batch) and the judge at the end.

The setting itself is ``setting.SETTING``; this package imports nothing, so reading the setting's
schema (``schema.py``) does not load its libraries.
"""
