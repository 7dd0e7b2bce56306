"""``lossmooth reproduce``: rebuild the paper's tables and figures from a registry of entries.

- :mod:`~lossmooth.reproduce.registry`: the entries (``registry.yaml``), validated, each run
  expanded from its overrides to the resolved config it stands for;
- :mod:`~lossmooth.reproduce.existing`: which of those configs already have a complete run directory;
- :mod:`~lossmooth.reproduce.build`: the ``lossmooth run`` commands for the missing ones, and the
  table (markdown, CSV) and plot built from exactly an entry's runs;
- :mod:`~lossmooth.reproduce.targets`: target numbers (``results/targets.csv``) and the check of a
  regenerated table against them.
"""
