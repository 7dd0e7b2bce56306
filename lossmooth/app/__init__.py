"""The applications behind the ``lossmooth`` command line (:mod:`lossmooth.cli` parses the arguments and
dispatches here):

- :mod:`.checks`: what ``lossmooth run`` checks before Hydra starts (overrides, every sweep point);
- :mod:`.run`: ``lossmooth run``, the Hydra application that composes ``conf/`` and hands the resolved
  config to the shared runner;
- :mod:`.table`, :mod:`.plot`, :mod:`.status`: the reading commands, over :mod:`.folders` (the folder
  they read, the files they write, their filters);
- :mod:`.pretrain`: ``lossmooth lm pretrain``, our own small causal LM at several pretraining budgets;
- :mod:`.collect`: ``lossmooth data collect``, D4RL-style datasets of our own;
- :mod:`.serve`: ``lossmooth serve``, an LM behind the OpenAI chat-completions API.
"""
