"""Speed figures of the online RL setting (prints them; asserts nothing).

    python benchmarks/online_rl_speed.py overhead   # env-steps/s: smoothed algorithm at lam = 1 vs plain rejax
    python benchmarks/online_rl_speed.py compile    # compile time, cold vs a second process with the cache
    python benchmarks/online_rl_speed.py all        # both [--algo td3|ppo|both] [--task hopper] [--seeds 4]

``overhead`` runs the smoothing machinery as it is after the ramp: every run at lam = 1, the source
data present (TD3: a full source replay buffer; PPO: the parallel source environments). Two smoothed
programs are timed: ``after ramp`` (compiled with ``with_source=False``, what the host runs from the
first chunk where every run is past its ramp) and ``cond`` (the source branch still in the program,
skipped by ``lax.cond``: the chunk in which the ramp ends). All are the same jit(vmap(scan of train
iterations)) over seeds on the CPU budget's configuration; timings are interleaved, best of
--repeats, compile excluded.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lossmooth.core.config import parse_methods  # noqa: E402
from lossmooth.rl.agents import adapt_init, seed_keys  # noqa: E402
from lossmooth.runner.compose import compose  # noqa: E402
from lossmooth.settings.online_rl.config import parse  # noqa: E402
from lossmooth.settings.online_rl.objective import build_agents  # noqa: E402


def programs(algo: str, task: str, seeds: int, iters: int):
    budget = "pendulum" if task == "pendulum" else "cpu"  # the default's budget, or the brax tasks' CPU one
    cfg = compose(["setting=online_rl", f"algo=[{algo}]", f"task={task}", f"budget={budget}", "shift=mass",
                   f"num_seeds={seeds}"])
    spec = parse(cfg)
    ag = build_agents(spec, algo, seeds)
    keys = seed_keys(spec.seed, spec.num_seeds, algo)

    def scan(algo_obj):
        def one(ts):
            return jax.lax.scan(lambda s, _: (algo_obj.train_iteration(s), None), ts, None, length=iters)[0]
        return jax.jit(jax.vmap(one))

    plain_state = jax.jit(jax.vmap(ag.source.init_state))(keys)
    runs = [{"seed_index": i, "init": "switch", "method": parse_methods(
        {"h": {"schedule": {"kind": "hard"}}})["h"]} for i in range(seeds)]
    # the smoothed state at lam = 1 with the source data in place (past the replay fill)
    sm_state, _ = adapt_init(ag, keys, plain_state, runs, spec.reset_optimizer)
    plain_state = jax.jit(jax.vmap(lambda ts: ts.replace(global_step=ts.global_step + 10 ** 6)))(plain_state)
    sm_state = jax.jit(jax.vmap(lambda ts: ts.replace(global_step=ts.global_step + 10 ** 6)))(sm_state)
    hard = ag.adapt.replace(method=runs[0]["method"])
    if algo == "td3":
        hard = hard.replace(uniform_warmup=False)
    out = {}
    for name, a, st in (("rejax", ag.source.replace(env=ag.target_env), plain_state),
                        ("after ramp", hard.replace(with_source=False), sm_state), ("cond", hard, sm_state)):
        f = scan(a)
        t = time.perf_counter()
        c = f.lower(st).compile()
        out[name] = (c, st, time.perf_counter() - t)
    return out, seeds * iters * ag.steps_per_iteration


def overhead(args):
    for algo in (["td3", "ppo"] if args.algo == "both" else [args.algo]):
        iters = 16 if algo == "td3" else 4
        progs, steps = programs(algo, args.task, args.seeds, iters)
        best = {k: float("inf") for k in progs}
        for _ in range(args.repeats):
            for k, (c, st, _) in progs.items():
                jax.block_until_ready(c(st))  # warm
                t = time.perf_counter()
                jax.block_until_ready(c(st))
                best[k] = min(best[k], time.perf_counter() - t)
        sps = {k: steps / v for k, v in best.items()}
        print(f"{algo} on {args.task} ({args.seeds} seeds vmapped, {steps} env-steps per call): "
              f"rejax {sps['rejax']:.0f} env-steps/s, smoothed after the ramp {sps['after ramp']:.0f} "
              f"(ratio {sps['after ramp'] / sps['rejax']:.3f}, target >= 0.95), with the skipped cond "
              f"{sps['cond']:.0f} (ratio {sps['cond'] / sps['rejax']:.3f}); compile "
              + " / ".join(f"{k} {v[2]:.1f}s" for k, v in progs.items()))


def compile_times(args):
    code = ("import time,sys,os; sys.path.insert(0, os.getcwd()); from lossmooth.core import engine; "
            "engine.enable_compilation_cache(sys.argv[1]); t=time.perf_counter(); "
            "sys.argv=['x', 'overhead']; "
            "from benchmarks.online_rl_speed import programs; "
            f"p,_=programs('{'td3' if args.algo == 'both' else args.algo}', '{args.task}', {args.seeds}, 4); "
            "print('COMPILE', sum(v[2] for v in p.values()))")
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold (empty cache)", "second process (persistent cache)"):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code, cache], capture_output=True, text=True,
                               cwd=os.path.join(os.path.dirname(__file__), ".."))
            comp = [ln for ln in r.stdout.splitlines() if ln.startswith("COMPILE")]
            print(f"compile of the rejax + smoothed programs, {label}: "
                  f"{float(comp[0].split()[1]) if comp else float('nan'):.1f}s "
                  f"(process {time.perf_counter() - t:.1f}s)" + ("" if comp else f" FAILED: {r.stderr[-300:]}"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["overhead", "compile", "all"])
    p.add_argument("--algo", default="both", choices=["td3", "ppo", "both"])
    p.add_argument("--task", default="hopper")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    if a.what in ("overhead", "all"):
        overhead(a)
    if a.what in ("compile", "all"):
        compile_times(a)


if __name__ == "__main__":
    main()
