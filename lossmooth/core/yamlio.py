"""Reading YAML: PyYAML's safe loader on libyaml's C parser where PyYAML was built with it (ten times
the pure-Python parser's speed: ``reproduce`` reads every committed run's ``config.yaml``). The C
parser feeds the same safe constructor and resolver, so a document gives the same Python objects."""
from __future__ import annotations

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(stream):
    """``yaml.safe_load(stream)``, parsed in C where available."""
    return yaml.load(stream, Loader=_LOADER)
