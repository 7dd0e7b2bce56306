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
--repeats, compile excluded. Each algorithm's line ends with the model FLOP/s of the program after
the ramp as a share of this machine's float32 matmul peak (``benchmarks/peak.py``), its FLOPs counted
from the networks' layer shapes (:func:`model_flops`; XLA's cost analysis counts each of the
iteration's loops once).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.peak import matmul_peak  # noqa: E402
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
    return out, seeds * iters * ag.steps_per_iteration, ag, sm_state


def macs(params) -> int:
    """Multiply-accumulates per sample of every dense layer in ``params`` (leading axis: the seeds;
    TD3's twin critics, stacked, count twice)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(int(np.prod(x.shape[1:])) for path, x in leaves if "kernel" in jax.tree_util.keystr(path))


def model_flops(algo: str, ag, state, seeds: int, iters: int) -> float:
    """Matmul FLOPs (2 per MAC) of ``iters`` iterations of every seed after the ramp (target loss only).
    A backward pass for weight and input gradients costs twice its forward; through the critics in TD3's
    actor update only the input gradients are needed.

    TD3 (a: the actor's MACs, c: both critics'; B: batch), per iteration: ``policy_delay`` rounds of
    ``num_envs`` acting steps (a each) and ``num_epochs`` critic updates (B (a + c + 3c): target actor,
    target critics, critics forward and backward), then ``num_epochs`` actor updates (B (3a + 2c)).
    PPO (a: the actor's, v: the critic's; N = num_steps x num_envs transitions), per iteration: the
    rollout (N (a + v)) and the last value (num_envs v), then ``num_epochs`` passes over the N
    transitions, each forward and backward through both networks (3 (a + v) per transition)."""
    x = ag.adapt
    a = macs(state.actor_ts.params)
    if algo == "td3":
        c = macs(state.critic_ts.params)
        per = (x.policy_delay * (x.num_envs * a + x.num_epochs * x.batch_size * (a + 4 * c))
               + x.num_epochs * x.batch_size * (3 * a + 2 * c))
    else:
        v = macs(state.critic_ts.params)
        n = x.num_steps * x.num_envs
        per = n * (a + v) + x.num_envs * v + x.num_epochs * n * 3 * (a + v)
    return 2.0 * per * seeds * iters


def overhead(args):
    peak = matmul_peak(repeats=args.repeats)
    for algo in (["td3", "ppo"] if args.algo == "both" else [args.algo]):
        iters = 16 if algo == "td3" else 4
        progs, steps, ag, state = programs(algo, args.task, args.seeds, iters)
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
        flops = model_flops(algo, ag, state, args.seeds, iters)
        got = flops / best["after ramp"]
        print(f"[flops] {algo} after the ramp: {flops / 1e9:.3f} GFLOP of network matmuls per call (layer shapes) "
              f"in {best['after ramp']:.3f} s = {got / 1e9:.2f} GFLOP/s; float32 matmul peak {peak / 1e9:.1f} "
              f"GFLOP/s -> {100 * got / peak:.2f}% of peak (aim >= 30%; below it, as expected where the networks are "
              f"MLPs of hidden width {hidden(state)} on batches of a few hundred samples at most and the "
              "environment steps, replay sampling and optimizer updates between the matmuls are no matmul work; "
              "not profiled further)")


def hidden(state) -> str:
    """The actor's hidden widths (a layer's output that another layer takes in), e.g. ``64``."""
    shapes = [x.shape[-2:] for p, x in jax.tree_util.tree_leaves_with_path(state.actor_ts.params)
              if "kernel" in jax.tree_util.keystr(p)]
    ins = {s[0] for s in shapes}
    return "/".join(str(w) for w in sorted({s[1] for s in shapes if s[1] in ins}))


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
