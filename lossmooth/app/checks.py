"""The checks ``lossmooth run`` makes before Hydra starts, so a bad override fails in one line (Hydra's
own message spans many) and a sweep's bad point fails before any point runs or Hydra writes a folder."""
from __future__ import annotations

from lossmooth.errors import ConfigError


def check_overrides(overrides: list[str]) -> None:
    """One-line errors for renamed keys and unknown config-group options."""
    from lossmooth.core.config import check_renamed
    from lossmooth.reproduce.registry import options
    from lossmooth.settings import REGISTER

    check_renamed(overrides)
    for ov in overrides:
        if ov.startswith(("-", "+", "~")) or "=" not in ov:
            continue
        key, val = ov.split("=", 1)
        if key.startswith("hydra.") and key != "hydra/launcher":
            continue
        available = options(key.replace(".", "/"))
        if not available:  # not a config group
            continue
        # a sweep (a,b) or a list ([a,b]) of options
        wanted = [v.strip() for v in val.strip("[]").split(",") if v.strip()]
        for w in wanted:
            if w not in available:
                raise ConfigError(f"{key}: unknown option '{w}'; choose one of {', '.join(available)}"
                                  + (f"; {REGISTER}" if key == "setting" else ""))


def compose_point(overrides: list[str]) -> dict:
    """Compose a single-run config once so unknown keys fail in one line before Hydra starts; return it
    resolved."""
    from lossmooth.runner.compose import check_added, compose

    overrides = [o for o in overrides if not o.startswith("hydra")]
    check_added(overrides)
    return compose(overrides)


def first_point(override: str) -> str | None:
    """``key=a,b,c`` -> ``key=a`` (a list value ``key=[a,b]`` stays whole: it is one point); None for
    a ``range(...)``/``choice(...)`` sweep, which only Hydra's sweeper expands."""
    key, sep, val = override.partition("=")
    if "(" in val:
        return None
    if not sep or val.startswith(("[", "{")):
        return override
    return f"{key}={val.split(',')[0]}"


def check_run(args: list[str]) -> None:
    """Every point ``lossmooth run args`` would run composes and validates (a multirun's every point: a
    bad one names itself)."""
    overrides = [a for a in args if not a.startswith("-")]
    check_overrides(overrides)
    from lossmooth import runner

    if not any(a in ("-m", "--multirun") for a in args):
        # validated here too: a bad value then costs one composition, not Hydra's two more
        runner.validate(compose_point(overrides))
        return
    from lossmooth.reproduce.registry import expand

    runnable = [o for o in overrides if not o.startswith("hydra")]
    try:
        points = expand(runnable)
    except ConfigError:  # an interval only the sweeper expands: its first point stands for it
        points = [[p for p in map(first_point, runnable) if p is not None]]
    for point in points:
        try:
            runner.validate(compose_point(point))
        except ConfigError as e:
            raise ConfigError(f"{e} (multirun point: {' '.join(point)})") from None
