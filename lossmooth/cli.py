"""``lossmooth``: run experiments, tabulate and plot results.

    lossmooth run [hydra overrides]          run the default (or configured) experiment
    lossmooth run -m shift=blur,contrast     a Hydra multirun (joblib / submitit launchers)
    lossmooth table [--where k=v ...]        aggregate complete runs into markdown / CSV
    lossmooth plot --out curves.png          learning curves around the switch
    lossmooth data collect [hydra overrides] D4RL-style datasets of our own (conf/collect.yaml)
    lossmooth status [--setting S]           every run directory: complete, incomplete or diverged

Bad input ends with one line ``lossmooth: error: ...`` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from lossmooth.errors import ConfigError


def _fail(msg: str) -> int:
    print(f"lossmooth: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return 2


def check_overrides(overrides: list[str], conf_dir: str | None = None) -> None:
    """One-line errors for unknown config-group options (Hydra's own message spans many lines)."""
    from lossmooth.provenance import CONF_DIR

    conf_dir = conf_dir or CONF_DIR
    for ov in overrides:
        if ov.startswith(("-", "+", "~")) or "=" not in ov:
            continue
        key, val = ov.split("=", 1)
        group_dir = os.path.join(conf_dir, key.replace(".", "/"))
        if not os.path.isdir(group_dir) or key.startswith("hydra.") and key != "hydra/launcher":
            continue
        options = sorted(f[:-5] for f in os.listdir(group_dir) if f.endswith(".yaml"))
        # a sweep (a,b) or a list ([a,b]) of options
        wanted = [v.strip() for v in val.strip("[]").split(",") if v.strip()]
        for w in wanted:
            if w not in options:
                raise ConfigError(f"{key}: unknown option '{w}'; choose one of {', '.join(options)}")


def _compose_check(overrides: list[str]) -> None:
    """Compose a single-run config once so unknown keys fail in one line before Hydra starts."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from lossmooth.provenance import CONF_DIR

    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[o for o in overrides if not o.startswith("hydra")])
            OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise ConfigError(" ".join(lines[:2]) + " (see conf/ for the valid keys)")


def cmd_run(args: list[str]) -> int:
    overrides = [a for a in args if not a.startswith("-")]
    try:
        check_overrides(overrides)
        if not any(a in ("-m", "--multirun") for a in args):
            _compose_check(overrides)
    except ConfigError as e:
        return _fail(str(e))
    from lossmooth import app

    sys.argv = ["lossmooth-run"] + args
    app.main()
    return 0


def _where(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--where: expected key=value, got '{it}'")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def cmd_table(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lossmooth table", description="aggregate complete runs")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--setting", default=None)
    p.add_argument("--where", nargs="*", default=[], help="row filters, e.g. method=loss_smoothing shift=blur")
    p.add_argument("--stat", choices=("mean", "iqm"), default="mean")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--markdown", help="also write the markdown table here")
    p.add_argument("--csv", help="also write every aggregated number here as CSV")
    a = p.parse_args(argv)
    from lossmooth.results import aggregate as agg
    from lossmooth.results import report
    from lossmooth.results.store import atomic_write

    try:
        if not os.path.isdir(a.results_dir):
            raise ConfigError(f"--results-dir: {a.results_dir} does not exist; run `lossmooth run` first "
                              "or point it at a results folder")
        rows = agg.collect(a.results_dir, a.setting, _where(a.where))
        if not rows:
            raise ConfigError(f"no complete runs under {a.results_dir} match {a.where or 'the filter'}; "
                              "check --setting/--where or run `lossmooth run`")
    except ConfigError as e:
        return _fail(str(e))
    groups, diffs, normalized = agg.tables(rows, reps=a.reps)
    md = report.markdown(groups, diffs, a.stat, normalized)
    print(md)
    if a.markdown:
        atomic_write(a.markdown, md)
    if a.csv:
        atomic_write(a.csv, report.csv_text(groups, diffs, normalized))
    return 0


def cmd_plot(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lossmooth plot", description="learning curves around the switch")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--setting", default=None)
    p.add_argument("--where", nargs="*", default=[])
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    from lossmooth.results import aggregate as agg
    from lossmooth.results import report

    try:
        rows = agg.collect(a.results_dir, a.setting, _where(a.where))
        if not rows:
            raise ConfigError(f"no complete runs under {a.results_dir} match {a.where or 'the filter'}; "
                              "check --setting/--where or run `lossmooth run`")
        if os.path.dirname(os.path.abspath(a.out)) and not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
            raise ConfigError(f"--out: folder {os.path.dirname(a.out)} does not exist; create it first")
    except ConfigError as e:
        return _fail(str(e))
    report.plot_curves(rows, a.out, a.title)
    print(f"wrote {a.out}")
    return 0


def cmd_data(argv: list[str]) -> int:
    """``lossmooth data collect [overrides]``: compose conf/collect.yaml and collect the datasets."""
    if not argv or argv[0] != "collect":
        return _fail("data: expected `lossmooth data collect [overrides]`")
    overrides = argv[1:]
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from lossmooth.provenance import CONF_DIR

    try:
        check_overrides(overrides)
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = OmegaConf.to_container(compose("collect", overrides=overrides), resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        return _fail(" ".join(lines[:2]) + " (see conf/collect.yaml for the valid keys)")
    except ConfigError as e:
        return _fail(str(e))
    from lossmooth.offline import collect

    try:
        collect.run(cfg)
    except ConfigError as e:
        return _fail(str(e))
    return 0


def cmd_status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lossmooth status", description="the state of every run directory")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--setting", default=None)
    a = p.parse_args(argv)
    from lossmooth.results import store

    if not os.path.isdir(a.results_dir):
        return _fail(f"--results-dir: {a.results_dir} does not exist; run `lossmooth run` first or point it "
                     "at a results folder")
    rows = store.run_states(a.results_dir, a.setting)
    print("| setting | run | state | runs | diverged | methods |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        runs = "" if r["runs"] is None else str(r["runs"])
        extra = f"{r.get('metric_rows', 0)} metric rows so far" if r["state"] == "incomplete" else ""
        print(f"| {r['setting']} | {r['run_id']} | {r['state']} | {runs} | {r['diverged']} | "
              f"{', '.join(r.get('methods', [])) or extra} |")
    counts = {k: sum(1 for r in rows if r["state"] == k) for k in ("complete", "diverged", "incomplete")}
    print(f"\n{len(rows)} run directories: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"run": cmd_run, "table": cmd_table, "plot": cmd_plot, "data": cmd_data, "status": cmd_status}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            return _fail(f"unknown command '{argv[0]}'; choose one of {', '.join(commands)}")
        return 0
    return commands[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
