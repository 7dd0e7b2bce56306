"""The help of ``lossmooth`` and its commands, in one shape: usage, a one-paragraph description, the
options, an example. Nothing here imports JAX or composes a config, so ``lossmooth run --help`` answers
at once (``benchmarks/cli_help.py`` times it); the config groups it lists are read from the file names
under ``conf/``.
"""
from __future__ import annotations

import argparse
import os
import textwrap

from lossmooth.provenance import CONF_DIR

WIDTH = 100
RUNS_DIR = "runs"            # a user's runs (git-ignored): what run writes and table, plot, status read
REFERENCE_DIR = "results"    # the committed reference runs: what reproduce and seeds read and write

# (command, summary): the experiments, then the setup steps they may need first
EXPERIMENTS = (
    ("run", "run one config (the embedded default, or yours through Hydra overrides) into runs/"),
    ("reproduce", "rebuild a named table of the paper's experiments under results/ (--list: the menu)"),
    ("table", "aggregate complete runs into markdown / CSV (reads runs/ unless --results-dir)"),
    ("plot", "learning curves around the switch (reads runs/ unless --results-dir)"),
    ("status", "every run directory: complete, incomplete, diverged or corrupt"),
    ("seeds", "seeds needed for a CI half-width and a power, from a committed pilot entry"),
)
SETUP = (
    ("data collect", "collect our own D4RL-style datasets (offline-to-online RL; conf/collect.yaml)"),
    ("lm pretrain", "pretrain our own small LM at several budgets (conf/pretrain.yaml)"),
    ("serve", "serve an LM behind the OpenAI chat-completions API on loopback (the LM judge)"),
)

MAIN = """usage: lossmooth <command> [options]

A benchmark suite for loss smoothing: adapt a model trained on a source objective to a target
objective with a ramp lam_t from the source loss to the target loss, against the hard switch, every
method, swept number and seed of a job in one compiled program. Experiments run, rebuild and read
results; setup steps prepare data and models once, before the experiments that need them.

experiments:
{experiments}

setup:
{setup}

options:
  -h, --help    this help; `lossmooth <command> --help` describes each command

Bad input ends with one line `lossmooth: error: ...` on stderr and exit status 2.

example:
  lossmooth run && lossmooth table        # the embedded default, then its table again from runs/
  lossmooth reproduce --list              # the menu of the paper's experiments
"""

RUN = """usage: lossmooth run [-m] [key=value ...] [group=option ...]

{description}

options:
  -h, --help            this help (Hydra's own: --hydra-help)
  -m, --multirun        one job per point of a sweep (key=a,b,c) through the hydra/launcher group
  key=value             any config value, e.g. num_seeds=4 setting.adapt_steps=500 results_dir=runs
  +sweep.NAME=[a,b]     numbers swept inside one compiled program (T, lam0, lr, ...)
  --cfg job             print the composed config and exit

config groups (group=option; a setting's own groups, in its folder, take their short name: with
setting=online_rl, online_rl/shift is shift=mass; a list, method=[a,b], runs several methods in one job):
{groups}

example:
  lossmooth run shift=blur method=[hard_switch,replay_mix] num_seeds=4
  lossmooth run -m hydra/launcher=slurm shift=blur,contrast
"""

RUN_DESCRIPTION = (
    "Run one config: the embedded default (supervised shifts on Fashion-MNIST) or what your Hydra "
    "overrides make of conf/. Every method, swept number and seed of the job trains in one compiled "
    f"program; the run lands in <results_dir>/<setting>/<run-id>/ (results_dir: {RUNS_DIR}/ by default, "
    "git-ignored) and its table is printed. Use run to try a config of your own. Use `lossmooth reproduce "
    "<entry>` instead to rebuild one of the paper's tables exactly as committed under results/ "
    "(`lossmooth reproduce --list` is the menu): it runs only what the entry lacks, with the entry's "
    "overrides.")


def config_groups(conf_dir: str = CONF_DIR) -> dict[str, list[str]]:
    """Every config group under ``conf_dir`` (a folder holding ``.yaml`` files, named by its path, e.g.
    ``shift`` or ``online_rl/shift``) and its options (the files' stems), sorted; Hydra's logging groups
    aside."""
    out = {}
    for root, dirs, files in os.walk(conf_dir):
        dirs.sort()
        group = os.path.relpath(root, conf_dir).replace(os.sep, "/")
        options = sorted(f[:-len(".yaml")] for f in files if f.endswith(".yaml"))
        if group != "." and options and not group.endswith("_logging"):
            out[group] = options
    return out


def run_help(conf_dir: str = CONF_DIR) -> str:
    groups = config_groups(conf_dir)
    width = max((len(g) for g in groups), default=0) + 2
    indent = " " * (2 + width)
    lines = [textwrap.fill(", ".join(opts), WIDTH, initial_indent=f"  {g:<{width}}", subsequent_indent=indent)
             for g, opts in groups.items()]
    return RUN.format(description=textwrap.fill(RUN_DESCRIPTION, WIDTH), groups="\n".join(lines))


def main_help() -> str:
    def listed(items):
        width = max(len(c) for c, _ in EXPERIMENTS + SETUP) + 2
        return "\n".join(f"  {c:<{width}}{s}" for c, s in items)
    return MAIN.format(experiments=listed(EXPERIMENTS), setup=listed(SETUP))


class Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help with the description and example kept as written (already wrapped)."""

    def __init__(self, prog):
        super().__init__(prog, width=WIDTH, max_help_position=32)


def parser_args(description: str, example: str) -> dict:
    """The keyword arguments giving an ``argparse`` parser the common shape: the description as one
    wrapped paragraph, the options, then ``example:`` lines."""
    return {"description": textwrap.fill(description, WIDTH), "formatter_class": Formatter,
            "epilog": "example:\n" + "\n".join(f"  {ln}" for ln in example.strip().splitlines())}


def preparation_help(command: str, step: str, config: str, description: str, example: str) -> str:
    """The help of a setup step with a config of its own (``lossmooth data collect``, ``lm pretrain``)."""
    return (f"usage: lossmooth {command} {step} [key=value ...]\n\n{textwrap.fill(description, WIDTH)}\n\n"
            f"options:\n  -h, --help    this help\n  key=value     any value of conf/{config}.yaml\n\n"
            "example:\n" + "\n".join(f"  {ln}" for ln in example.strip().splitlines()) + "\n")


def reading(command: str, results_dir: str) -> str:
    """The line saying which folder a reading command reads."""
    if os.path.normpath(results_dir) == RUNS_DIR:
        return (f"lossmooth {command}: reading {RUNS_DIR}/ (your runs; the committed reference runs: "
                f"--results-dir {REFERENCE_DIR})")
    return f"lossmooth {command}: reading {results_dir}"
