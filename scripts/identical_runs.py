"""Does a change of code change a number? Runs shortened versions of every setting's embedded default
(each code path a default takes: every setting, regularizers, adaptive schedules, dense evaluation, a
sequence of shifts, a swept number) with the current tree and with the tree of a base commit, and
compares what each run writes (``metrics.jsonl``, ``runs.json``) byte for byte.

    python scripts/identical_runs.py check [--base REF] [--only CASE ...]
    python scripts/identical_runs.py run OUT [--only CASE ...]     # this tree's runs into OUT
    python scripts/identical_runs.py compare A B

The base commit's runs are made once per commit (in a temporary git worktree of it) and kept under
``~/.cache/lossmooth/identical/<sha>/``; ``check`` prints one line per case (``identical`` or the first
differing line) and exits 1 where any differs. Both sides run on this machine, one after the other:
numbers from another machine may differ in the last bits (XLA's CPU code depends on the CPU).
Shortened runs cover the code, not the defaults' lengths; ``--only full_supervised full_lm`` (and the
other ``full_*`` cases) compare the embedded defaults at full length, both sides on this machine.
"""
from __future__ import annotations

import argparse
import filecmp
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the last commit before the contract redesign (settings as pure functions, schema configs, the runner
# as plan, sink and hooks): the numbers every later commit must reproduce
DEFAULT_BASE = "d8bb946"
FILES = ("metrics.jsonl", "runs.json")
COMMON = ["logger=jsonl", "progress=false", "cache_dir=null"]

SUP = ["setting.source_steps=40", "setting.adapt_steps=40", "setting.eval_every=10", "setting.evals_per_chunk=2",
       "setting.source_evals_per_chunk=2", "setting.eval_size=256", "setting.smoothing_T=20", "setting.gap_window=20"]
CASES = {
    # the supervised default's methods and two regularizers, a swept number, dense evaluation
    "supervised": ["setting=supervised", "num_seeds=3", "method=[hard_switch,loss_smoothing,l2_init,kl_init,replay_mix]",
                   "dense_eval.steps=10", *SUP],
    "supervised_sweep": ["setting=supervised", "num_seeds=2", "method=[hard_switch,loss_smoothing]",
                         "+sweep.T=[10,30]", *SUP],
    "supervised_adaptive": ["setting=supervised", "num_seeds=2", "method=[hard_switch,source_guard,progress_ramp]", *SUP],
    "supervised_sequence": ["setting=supervised", "num_seeds=2", "sequence=three", "method=[hard_switch,loss_smoothing]",
                            *SUP],
    "pretrained_vision": ["setting=pretrained_vision", "num_seeds=2", "method=[hard_switch,loss_smoothing,lp_ft]",
                          "setting.source_steps=20", "setting.adapt_steps=20", "setting.eval_every=5",
                          "setting.evals_per_chunk=2", "setting.source_evals_per_chunk=2", "setting.eval_size=64",
                          "setting.smoothing_T=10", "setting.gap_window=10", "method.lp_ft.probe_steps=10"],
    "online_rl": ["setting=online_rl", "num_seeds=2", "budget.td3.source_steps=2000", "budget.td3.adapt_steps=1000",
                  "budget.td3.eval_every=500", "budget.ppo.source_steps=20000", "budget.ppo.adapt_steps=20000",
                  "budget.ppo.eval_every=10000", "setting.eval_episodes=4", "setting.smoothing_T=16",
                  "setting.gap_window=1000"],
    "offline_to_online": ["setting=offline_to_online", "num_seeds=2", "setting.source_steps=200",
                          "setting.source_eval_every=100", "setting.adapt_steps=2048", "setting.eval_every=1024",
                          "setting.smoothing_T=64", "setting.gap_window=1024"],
    "lm": ["setting=lm", "num_seeds=2", "judge=none", "setting.adapt_steps=4", "setting.eval_every=2",
           "setting.smoothing_T=2", "setting.gap_window=2", "lm_budget.eval_rows=4", "lm_budget.micro_batch=2",
           "lm_budget.seq_len=64"],
}

# the embedded defaults at full length (minutes to an hour each on 2 cores): run only when named in --only
FULL = {"full_supervised": ["setting=supervised"], "full_pretrained_vision": ["setting=pretrained_vision"],
        "full_lm": ["setting=lm"], "full_online_rl": ["setting=online_rl"],
        "full_offline_to_online": ["setting=offline_to_online"]}
ALL = {**CASES, **FULL}


def run_cases(out: str, cases: list[str], tree: str = ROOT) -> None:
    """Each case's ``lossmooth run`` with ``tree``'s code (its folder first on the path), its two files
    copied to ``out/<case>/``; a failing run stops here with its command and output."""
    env = {**os.environ, "PYTHONPATH": tree, "WANDB_MODE": "disabled"}
    for case in cases:
        results = tempfile.mkdtemp(prefix=f"identical-{case}-")
        cmd = [sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", *COMMON, *ALL[case]]
        print(f"  {case}: running ({os.path.relpath(tree) if tree != ROOT else 'this tree'})", flush=True)
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"identical_runs: {case} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
        (run_dir,) = [os.path.dirname(f) for f in glob.glob(os.path.join(results, "*", "*", "runs.json"))]
        os.makedirs(os.path.join(out, case), exist_ok=True)
        for f in FILES:
            shutil.copyfile(os.path.join(run_dir, f), os.path.join(out, case, f))
        shutil.rmtree(results, ignore_errors=True)


def first_difference(a: str, b: str) -> str:
    """The first line where two files differ (1-based), both versions cut to 160 characters."""
    with open(a) as fa, open(b) as fb:
        for i, (x, y) in enumerate(zip(fa, fb), 1):
            if x != y:
                return f"line {i}: {x.strip()[:160]} | {y.strip()[:160]}"
    return "one file is longer"


def compare(a: str, b: str, cases: list[str]) -> bool:
    """One line per case and file; True where every file is byte-identical."""
    same = True
    for case in cases:
        for f in FILES:
            x, y = os.path.join(a, case, f), os.path.join(b, case, f)
            if not (os.path.exists(x) and os.path.exists(y)):
                print(f"{case}/{f}: missing in {a if not os.path.exists(x) else b}")
                same = False
            elif filecmp.cmp(x, y, shallow=False):
                print(f"{case}/{f}: identical")
            else:
                print(f"{case}/{f}: DIFFERS, {first_difference(x, y)}")
                same = False
    return same


def base_runs(ref: str, cases: list[str]) -> str:
    """The base commit's runs of ``cases`` (made now in a worktree of it where not cached)."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    out = os.path.join(os.path.expanduser("~/.cache/lossmooth/identical"), sha)
    missing = [c for c in cases if not all(os.path.exists(os.path.join(out, c, f)) for f in FILES)]
    if missing:
        tree = tempfile.mkdtemp(prefix="identical-base-")
        subprocess.run(["git", "worktree", "add", "--detach", tree, sha], cwd=ROOT, check=True, capture_output=True)
        try:
            run_cases(out, missing, tree)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="this tree's runs against a base commit's")
    c.add_argument("--base", default=DEFAULT_BASE, help=f"the base commit (default {DEFAULT_BASE})")
    r = sub.add_parser("run", help="this tree's runs into a folder")
    r.add_argument("out")
    for p in (c, r):
        p.add_argument("--only", nargs="+", choices=sorted(ALL), default=sorted(CASES), metavar="CASE",
                       help=f"cases to run (default every shortened one: {', '.join(sorted(CASES))}; the full-length "
                            f"defaults only when named: {', '.join(FULL)})")
    m = sub.add_parser("compare", help="two folders of runs")
    m.add_argument("a")
    m.add_argument("b")
    args = ap.parse_args(argv)
    if args.cmd == "compare":
        cases = sorted({os.path.basename(p) for p in glob.glob(os.path.join(args.a, "*"))})
        return 0 if compare(args.a, args.b, cases) else 1
    if args.cmd == "run":
        run_cases(args.out, args.only)
        return 0
    base = base_runs(args.base, args.only)
    now = tempfile.mkdtemp(prefix="identical-now-")
    run_cases(now, args.only)
    same = compare(base, now, args.only)
    print("identical: every case" if same else "identical_runs: some numbers changed (above)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
