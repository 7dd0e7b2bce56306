"""The registry of reproducible tables and figures: the entries of ``experiments/`` (one YAML file per
entry, named by its file), validated, and resolved to the configs their runs stand for.

An *entry* is one table (and its plot): a setting, a list of runs (each the overrides ``lossmooth
run`` gets, possibly a Hydra sweep standing for several runs) and how the table is aggregated. A
*point* is one run after sweeps are expanded: its overrides and its resolved config.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re

import yaml

from lossmooth.core import yamlio
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR
from lossmooth.reproduce import criteria
from lossmooth.results import metrics, store
from lossmooth.runner.compose import compose
from lossmooth.settings import search_path

EXPERIMENTS = os.path.join(os.path.dirname(CONF_DIR), "experiments")
STATS = ("mean", "iqm")
MAP_PLOTS = ("heat", "lines")  # a map's figure: heatmaps, or lines across its rows (one per column value)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # an entry name is also a file name
_FIELDS = {"description", "setting", "runs", "aggregate", "data", "criteria", "analysis", "pilot", "seeds"}
_AGGREGATE = {"stat", "where", "label_by", "reps", "title", "map"}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One table and plot: ``runs`` are override lists (without ``setting=``, which is prepended)."""

    name: str
    description: str
    setting: str
    runs: tuple[tuple[str, ...], ...]
    stat: str = "mean"
    where: tuple[tuple[str, str], ...] = ()
    label_by: tuple[str, ...] = ()
    reps: int = 2000
    title: str = ""
    # the committed runs' data identity (e.g. ``dataset_sha256``) where the config does not fix the data
    data: tuple[tuple[str, str], ...] = ()
    # what makes the entry a measurement (:mod:`lossmooth.reproduce.criteria`)
    criteria: tuple = ()
    # a map of paired differences: (row keys, column number, metrics, plot), e.g. (("shift", "severity"), "T", (...), "heat")
    map: tuple = ()
    # the analysis plan: the primary metrics the entry's claim rests on and the paired rows of its family
    # (``key=value`` filters); their sign-flip p-values are Holm-adjusted, every other column is exploratory
    primary: tuple[str, ...] = ()
    family: tuple[tuple[str, str], ...] = ()
    # a pilot (a regime choice: e.g. the hard switch alone), never a result: no result entry may use its runs
    pilot: bool = False
    # the seed plan: the inputs of ``lossmooth seeds`` and its answer (:mod:`lossmooth.reproduce.seeds`)
    seeds: tuple[tuple[str, str], ...] = ()
    # the file the entry was read from (its plan's history is read from git: :mod:`lossmooth.reproduce.order`)
    source: str = ""

    def outputs(self, results_dir: str) -> dict[str, str]:
        """The files the entry's table and plot are written to, by kind (md, csv, png; map: the heatmaps)."""
        base = os.path.join(results_dir, "reproduce", self.name)
        out = {ext: f"{base}.{ext}" for ext in ("md", "csv", "png")}
        if self.map:
            out["map"] = f"{base}_map.png"
        return out

    def run_overrides(self, i: int) -> list[str]:
        """The overrides of the entry's ``i``-th run, its setting first."""
        return [f"setting={self.setting}", *self.runs[i]]


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of an entry: ``overrides`` (a sweep resolved to one value), the index of the entry's
    run it comes from, and the resolved config (a plain dict)."""

    overrides: tuple[str, ...]
    run: int
    config: dict


def load(path: str = EXPERIMENTS) -> dict[str, Entry]:
    """Every entry at ``path``, validated (one-line :class:`ConfigError`): a folder of entry files
    (``<name>.yaml``, the layout of ``experiments/``) or one YAML file mapping names to entries."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".yaml"))
        if not files:
            raise ConfigError(f"--experiments: {path} holds no entry files (<name>.yaml)")
        return {f[:-5]: _entry(f[:-5], _read(os.path.join(path, f)), os.path.join(path, f)) for f in files}
    raw = _read(path)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"--experiments: {path} must map entry names to entries")
    return {str(name): _entry(str(name), body, path) for name, body in raw.items()}


def _read(path: str):
    try:
        with open(path) as f:
            return yamlio.load(f)
    except OSError as e:
        raise ConfigError(f"--experiments: cannot read {path} ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--experiments: {path} is not valid YAML ({str(e).splitlines()[0]})") from None


def _entry(name: str, body, path: str) -> Entry:
    where = f"{path}: entry '{name}'"
    _fields(name, body, where)
    runs = _runs(body["runs"], where)
    agg = body.get("aggregate") or {}
    if not isinstance(agg, dict) or set(agg) - _AGGREGATE:
        raise ConfigError(f"{where}: aggregate takes {', '.join(sorted(_AGGREGATE))}")
    stat, reps, filters, label_by = _aggregate(agg, where)
    data = body.get("data") or {}
    if not isinstance(data, dict) or not all(isinstance(v, (str, int, float, list)) for v in data.values()):
        raise ConfigError(f"{where}: data must map identity fields (e.g. dataset_sha256) to the committed runs' values")
    primary, family = _analysis(body.get("analysis"), where)
    pilot = body.get("pilot", False)
    if not isinstance(pilot, bool):
        raise ConfigError(f"{where}: pilot must be true or false, got {pilot!r}")
    seeds = body.get("seeds") or {}
    if not isinstance(seeds, dict) or not all(isinstance(v, (str, int, float)) for v in seeds.values()):
        raise ConfigError(f"{where}: seeds must map the seed plan's inputs (pilot, metric, halfwidth, effect, "
                          "power) and answer (n) to values")
    return Entry(name=name, map=_map(agg.get("map"), where) or (), primary=primary, family=family, pilot=pilot,
                 source=path, seeds=tuple((str(k), json.dumps(v)) for k, v in seeds.items()),
                 criteria=criteria.parse(body.get("criteria"), where),
                 data=tuple((str(k), json.dumps(v)) for k, v in sorted(data.items())),
                 description=" ".join(str(body["description"]).split()), setting=body["setting"],
                 runs=runs, stat=stat, where=tuple((str(k), str(v)) for k, v in filters.items()),
                 label_by=tuple(label_by), reps=reps, title=str(agg.get("title") or name))


def _fields(name: str, body, where: str) -> None:
    """The entry's name, its fields (known ones, the required ones present) and its setting."""
    if not _NAME.match(name):
        raise ConfigError(f"{where}: names use letters, digits, '_', '-' and '.' only (they name files)")
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a mapping with {', '.join(sorted(_FIELDS))}")
    unknown = set(body) - _FIELDS
    missing = {"description", "setting", "runs"} - set(body)
    if unknown or missing:
        raise ConfigError(f"{where}: " + "; ".join(
            ([f"unknown field(s) {', '.join(sorted(unknown))}"] if unknown else [])
            + ([f"missing field(s) {', '.join(sorted(missing))}"] if missing else [])))
    settings = options("setting")
    if body["setting"] not in settings:
        raise ConfigError(f"{where}: setting '{body['setting']}' is not one of {', '.join(settings)}")


def _runs(runs, where: str) -> tuple[tuple[str, ...], ...]:
    """The entry's runs: lists of overrides, none of them one that ``reproduce`` sets itself."""
    if (not isinstance(runs, list) or not runs
            or not all(isinstance(r, list) and all(isinstance(o, str) for o in r) for r in runs)):
        raise ConfigError(f"{where}: runs must be a non-empty list of override lists (strings)")
    for r in runs:
        for o in r:
            if o.split("=", 1)[0].lstrip("+~") in ("results_dir", "setting") or o.startswith("hydra"):
                raise ConfigError(f"{where}: run override '{o}' is set by `lossmooth reproduce` "
                                  "(the setting comes from the entry's setting field)")
    return tuple(tuple(r) for r in runs)


def _aggregate(agg: dict, where: str) -> tuple:
    """``aggregate``'s stat, bootstrap resamples, row filters and label keys."""
    stat, reps = agg.get("stat", "mean"), agg.get("reps", 2000)
    filters, label_by = agg.get("where") or {}, agg.get("label_by") or []
    if stat not in STATS:
        raise ConfigError(f"{where}: aggregate.stat must be one of {', '.join(STATS)}, got {stat!r}")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"{where}: aggregate.reps must be an integer >= 1, got {reps!r}")
    if not isinstance(filters, dict):
        raise ConfigError(f"{where}: aggregate.where must map row fields to values")
    if not isinstance(label_by, list) or not all(isinstance(k, str) and k for k in label_by):
        raise ConfigError(f"{where}: aggregate.label_by must be a list of config keys")
    return stat, reps, filters, label_by


def _map(amap, where: str):
    """``aggregate.map`` as (rows, cols, metrics, plot), or None."""
    if amap is None:
        return None
    if (not isinstance(amap, dict) or set(amap) - {"rows", "cols", "metrics", "plot"}
            or not isinstance(amap.get("rows"), list)
            or not isinstance(amap.get("cols"), str) or not isinstance(amap.get("metrics"), list)
            or not all(isinstance(x, str) for x in amap["rows"] + amap["metrics"])
            or amap.get("plot", "heat") not in MAP_PLOTS):
        raise ConfigError(f"{where}: aggregate.map must be {{rows: [row fields], cols: a number's name or "
                          f"method, metrics: [summary names], plot: {' or '.join(MAP_PLOTS)} (optional)}}")
    return (tuple(amap["rows"]), amap["cols"], tuple(amap["metrics"]), amap.get("plot", "heat"))


def _analysis(raw, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """An entry's ``analysis: {primary: [summary names], family: {row field: value}}``, validated."""
    if raw is None:
        return (), ()
    if not isinstance(raw, dict) or set(raw) - {"primary", "family"} or "primary" not in raw:
        raise ConfigError(f"{where}: analysis must be {{primary: [summary names], family: {{row field: value}} "
                          "(optional)}")
    primary, family = raw["primary"], raw.get("family") or {}
    if not isinstance(primary, list) or not primary or not all(isinstance(m, str) for m in primary):
        raise ConfigError(f"{where}: analysis.primary must be a non-empty list of summary names "
                          "(e.g. [final_target_acc, min_acc])")
    unknown = [m for m in primary if not metrics.is_summary_name(m)]
    if unknown:
        raise ConfigError(f"{where}: analysis.primary names unknown metric(s) {', '.join(unknown)}; use a "
                          "summary name as the table's CSV has it without _diff (e.g. min_acc, final_target_acc)")
    if not isinstance(family, dict) or not all(isinstance(k, str) for k in family):
        raise ConfigError(f"{where}: analysis.family must map paired-row fields to values (e.g. {{method: "
                          "loss_smoothing}})")
    return tuple(primary), tuple((k, str(v)) for k, v in family.items())


def options(group: str) -> list[str]:
    """The options of a config group (its file names) in conf/ and the config folders of settings
    from outside the project."""
    found = set()
    for root in [CONF_DIR, *search_path()]:
        d = os.path.join(root, group)
        if os.path.isdir(d):
            found |= {f[:-5] for f in os.listdir(d) if f.endswith(".yaml")}
    return sorted(found)


def expand(overrides: list[str]) -> list[list[str]]:
    """The override lists a Hydra multirun over ``overrides`` would run (``a=x,y`` -> ``a=x`` and
    ``a=y``, cartesian over every swept key, in Hydra's order); other overrides are kept as written
    (Hydra's own splitting would turn ``~key`` into ``~key=null``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(" ".join(str(e).split("\n")[:1])) from None
    axes = []
    for o in parsed:
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ConfigError(f"{o.input_line}: only lists of values can be swept here, not intervals")
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(p) for p in itertools.product(*axes)]


def resolve(entry: Entry) -> list[Point]:
    """Every point of ``entry`` with its resolved config (nothing runs; one-line error on bad
    overrides, a point of another setting, a missing ``label_by`` key or two runs that coincide)."""
    points: list[Point] = []
    for i in range(len(entry.runs)):
        for ov in expand(entry.run_overrides(i)):
            try:
                cfg = compose(ov, where=None)
            except ConfigError as e:
                raise ConfigError(f"entry '{entry.name}', run {' '.join(ov)}: {e}") from None
            if (cfg.get("setting") or {}).get("name") != entry.setting:
                raise ConfigError(f"entry '{entry.name}', run {' '.join(ov)}: resolves to setting "
                                  f"'{(cfg.get('setting') or {}).get('name')}', not '{entry.setting}'")
            for key in entry.label_by:
                config_value(cfg, key, f"entry '{entry.name}': aggregate.label_by")
            same = [p for p in points if numbers_config(p.config) == numbers_config(cfg)]
            if same:
                raise ConfigError(f"entry '{entry.name}': runs {' '.join(same[0].overrides)} and "
                                  f"{' '.join(ov)} are the same config; list it once")
            points.append(Point(overrides=tuple(ov), run=i, config=cfg))
    return points


numbers_config = store.numbers_config


def config_value(cfg: dict, key: str, field: str):
    """The value at dotted ``key`` of ``cfg`` (one-line error naming ``field`` when absent)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{field}: '{key}' is not a key of the run's config")
        node = node[part]
    return node
