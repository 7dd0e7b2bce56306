"""Speed figures of the supervised setting's compiled core (prints them; asserts nothing).

    python benchmarks/supervised_speed.py vmap       # vmapped batch vs the same runs one after another
    python benchmarks/supervised_speed.py overhead   # lam=1 step and ramp step vs a target-only step
    python benchmarks/supervised_speed.py flops      # model FLOP/s vs this machine's matmul peak
    python benchmarks/supervised_speed.py compile    # N seeds in one process vs N single-seed processes
    python benchmarks/supervised_speed.py dense      # the first chunk with dense evaluation vs without
    python benchmarks/supervised_speed.py all

Every ratio is measured within one run of this script (timings interleaved, best of --repeats),
because shared machines are noisy. Compile time is measured separately from run time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.peak import compiled_flops, matmul_peak, share_line  # noqa: E402
from lossmooth.core import engine  # noqa: E402
from lossmooth.models import classifiers  # noqa: E402
from lossmooth.core.runs import expand_runs  # noqa: E402
from lossmooth.runner.compose import compose  # noqa: E402
from lossmooth.settings.supervised import objective as O  # noqa: E402
from lossmooth.settings.supervised.config import parse  # noqa: E402
from lossmooth.settings.supervised.data import build_data  # noqa: E402
from lossmooth.settings.supervised.setting import Programs, seed_keys  # noqa: E402


def setup(overrides=(), base=("setting.evals_per_chunk=1", "setting.eval_every=20", "setting.eval_size=64")):
    """Spec, data, programs and freshly initialized parameters of the supervised config ``base`` +
    ``overrides`` (``base``: short chunks and small evaluations; ``()``: the default's shapes)."""
    cfg = compose(["logger=jsonl"] + list(base) + list(overrides))
    spec = parse(cfg)
    data, info = build_data(spec)
    model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
    progs = Programs(spec, model, info["num_classes"])
    keys = seed_keys(spec)
    params = jax.vmap(lambda k: progs.init_source(k, data.source_x)["params"])(keys)
    return spec, data, progs, params


def batch(spec, progs, params, T: int, n: int):
    """State and hp for n runs of the linear schedule with ramp length T (T=0: lam = 1 always)."""
    runs = [r for r in expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)
            if r["name"] == "loss_smoothing"][:1] * n
    runs = [dict(r, method=r["method"].replace(schedule=r["method"].schedule.replace(
        T=jnp.asarray(float(T))))) for r in runs]
    seed_idx = jnp.zeros((n,), jnp.int32)
    hp = {"key": seed_keys(spec)[seed_idx], "method": engine.stack_runs([r["method"] for r in runs]),
          "lr": jnp.full((n,), spec.lr, jnp.float32)}
    p = jax.tree.map(lambda x: x[seed_idx], params)
    state = jax.vmap(lambda p, h: progs.init_adapt({"params": p}, h, "none"))(p, hp)
    return state, hp


def timed(fn, *args, repeats=3):
    """(compile seconds, best run seconds) of a jitted fn."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    c = time.perf_counter() - t
    jax.block_until_ready(compiled(*args))  # warm
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return c, best, compiled


def bench_vmap(args):
    spec, data, progs, params = setup([f"num_seeds={args.runs}"])
    chunk = engine.make_chunk(progs.adapt_step, lambda s, h, d: {}, spec.eval_every, 1)
    n = args.runs
    state_n, hp_n = batch(spec, progs, params, T=10_000, n=n)  # mid-ramp: both losses every step
    state_1, hp_1 = jax.tree.map(lambda x: x[:1], (state_n, hp_n))
    cv, _, fv = timed(chunk, state_n, hp_n, data, repeats=1)
    c1, _, f1 = timed(chunk, state_1, hp_1, data, repeats=1)
    tv, ts = [], []
    for _ in range(args.repeats):  # interleaved
        t = time.perf_counter(); jax.block_until_ready(fv(state_n, hp_n, data)); tv.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(f1(state_1, hp_1, data))
        ts.append(time.perf_counter() - t)
    steps = spec.eval_every * n
    print(f"[vmap] {n} runs x {spec.eval_every} steps (target batch {spec.target_batch} + source batch "
          f"{spec.source_batch}, default CNN)")
    print(f"[vmap] compile: vmapped {cv:.1f}s, single-run {c1:.1f}s")
    print(f"[vmap] vmapped: {min(tv):.3f}s ({steps / min(tv):.0f} run-steps/s); one after another: "
          f"{min(ts):.3f}s ({steps / min(ts):.0f} run-steps/s)")
    print(f"[vmap] throughput ratio vmapped / sequential = {min(ts) / min(tv):.2f}x (target >= 0.9x)")


def target_only_step(progs):
    """A plain target-loss update with no smoothing machinery (the reference for the overhead)."""
    spec, model = progs.spec, progs.model

    def step(state, hp, data):
        key = jax.random.fold_in(jax.random.fold_in(hp["key"], 2), state["step"])
        k_tgt, _ = jax.random.split(key)
        xt, yt = O.sample(k_tgt, data.target_x, data.target_y, spec.target_batch)
        loss, g = jax.value_and_grad(lambda p: O.xent(model.apply({"params": p}, xt), yt))(state["params"])
        opt = O.optimizer(spec.optimizer, hp["lr"])
        upd, os_ = opt.update(g, state["opt_state"], state["params"])
        return dict(state, params=optax.apply_updates(state["params"], upd), opt_state=os_,
                    step=state["step"] + 1), {"loss_target": loss}

    return step


def bench_overhead(args):
    for batches in ([], ["setting.target_batch=256"]):
        spec, data, progs, params = setup([f"num_seeds={args.runs}"] + batches)
        n = args.runs
        smooth = engine.make_chunk(progs.adapt_step, lambda s, h, d: {}, spec.eval_every, 1)
        free = engine.make_chunk(lambda s, h, d: progs.adapt_step(s, h, d, with_source=False),
                                 lambda s, h, d: {}, spec.eval_every, 1)
        plain = engine.make_chunk(target_only_step(progs), lambda s, h, d: {}, spec.eval_every, 1)
        s_after, hp_after = batch(spec, progs, params, T=0, n=n)  # lam = 1
        s_ramp, hp_ramp = batch(spec, progs, params, T=10_000, n=n)  # lam < 1: both losses
        fs = {name: timed(f, s_after, hp_after, data, repeats=1)[2]
              for name, f in (("plain", plain), ("cond", smooth), ("free", free))}
        cases = (("plain", fs["plain"], s_after, hp_after), ("cond", fs["cond"], s_after, hp_after),
                 ("free", fs["free"], s_after, hp_after), ("ramp", fs["cond"], s_ramp, hp_ramp))
        times = {c[0]: [] for c in cases}
        for _ in range(args.repeats):  # interleaved, best of repeats
            for name, f, st, h in cases:
                t = time.perf_counter()
                jax.block_until_ready(f(st, h, data))
                times[name].append(time.perf_counter() - t)
        b = {k: min(v) for k, v in times.items()}
        per = lambda k: 1e3 * b[k] / spec.eval_every  # noqa: E731
        bt, bs = spec.target_batch, spec.source_batch
        print(f"[overhead] target batch {bt}, source batch {bs}, {n} runs vmapped; per step: target-only "
              f"{per('plain'):.1f} ms | lam=1, source-free program (what the engine runs after the ramp) "
              f"{per('free'):.1f} ms | lam=1 inside the ramp program (source branch skipped by lax.cond) "
              f"{per('cond'):.1f} ms | during the ramp {per('ramp'):.1f} ms")
        print(f"[overhead]   lam=1 / target-only = {b['free'] / b['plain']:.3f}x after the ramp, "
              f"{b['cond'] / b['plain']:.3f}x mid-program (target <= 1.03x)")
        print(f"[overhead]   ramp / target-only = {b['ramp'] / b['plain']:.3f}x (target <= 2.1x; the batches "
              f"alone make {(bt + bs) / bt:.2f}x the examples)")


def bench_flops(args):
    spec, data, progs, params = setup([f"num_seeds={args.runs}"])
    n = args.runs
    chunk = engine.make_chunk(progs.adapt_step, lambda s, h, d: {}, spec.eval_every, 1)
    state, hp = batch(spec, progs, params, T=10_000, n=n)
    _, best, _ = timed(chunk, state, hp, data, repeats=args.repeats)
    # XLA's cost analysis counts a loop body once, so ask it about one vmapped step
    one_step = jax.jit(jax.vmap(progs.adapt_step, in_axes=(0, 0, None), axis_name="runs"))
    flops = compiled_flops(one_step.lower(state, hp, data).compile()) * spec.eval_every
    print(share_line(f"{n} runs x {spec.eval_every} ramp steps", flops, best, matmul_peak(repeats=args.repeats),
                     "XLA cost analysis of one vmapped step x steps"))


def bench_compile(args):
    short = ["setting.source_steps=50", "setting.adapt_steps=50", "setting.source_evals_per_chunk=5",
             "logger=jsonl", "progress=false", "cache_dir=null"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        base = [sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={d}"] + short
        env = {**os.environ, "WANDB_MODE": "disabled"}
        t = time.perf_counter()
        subprocess.run(base + [f"num_seeds={args.seeds}"], check=True, capture_output=True, env=env)
        one = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(args.seeds):
            subprocess.run(base + ["num_seeds=1", f"seed={i}"], check=True, capture_output=True, env=env)
        many = time.perf_counter() - t
    print("[compile] default experiment shortened to 50 source + 50 adaptation steps, no compilation cache")
    print(f"[compile] {args.seeds} seeds in one compiled call: {one:.1f}s; {args.seeds} single-seed processes: "
          f"{many:.1f}s; ratio {many / one:.1f}x")


def bench_dense(args):
    """The cost of dense evaluation (config ``dense_eval``): the default's first adaptation chunk
    (5 x 10 updates, evaluations on 1000 examples per domain) evaluated after every one of its 50
    updates, on the whole evaluation sets and on their first 200 examples, against the plain chunk."""
    rows = []
    for size in (None, 200):
        over = [f"num_seeds={args.runs}", "dense_eval.steps=50"] + ([f"dense_eval.size={size}"] if size else [])
        spec, data, progs, params = setup(over, base=())
        state, hp = batch(spec, progs, params, T=10_000, n=args.runs)
        sig = hp["method"].signature
        plain, dense = progs.adapt_chunk(sig), progs.adapt_chunk(sig, dense=True)
        cp, _, fp = timed(plain, state, hp, data, repeats=1)
        cd, _, fd = timed(dense, state, hp, data, repeats=1)
        tp, td = [], []
        for _ in range(args.repeats):  # interleaved, best of repeats
            t = time.perf_counter(); jax.block_until_ready(fp(state, hp, data)); tp.append(time.perf_counter() - t)
            t = time.perf_counter(); jax.block_until_ready(fd(state, hp, data)); td.append(time.perf_counter() - t)
        chunks = spec.adapt_steps // (spec.eval_every * spec.evals_per_chunk)
        rows.append((size or spec.eval_size, cp, cd, min(tp), min(td), chunks))
    print(f"[dense] {args.runs} runs vmapped, default shapes: first adaptation chunk = 50 updates with 5 evaluations; "
          "dense: 51 more evaluations (the switch and every update)")
    for size, cp, cd, tp, td, chunks in rows:
        print(f"[dense]   dense set {size} examples per domain: compile plain {cp:.1f}s, dense {cd:.1f}s; run plain "
              f"{tp:.2f}s, dense {td:.2f}s = {td / tp:.2f}x the chunk; the whole adaptation ({chunks} chunks) "
              f"+{100 * (td - tp) / (chunks * tp):.0f}%")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("vmap", "overhead", "flops", "compile", "dense", "all"))
    p.add_argument("--runs", type=int, default=8, help="runs in the vmapped batch")
    p.add_argument("--seeds", type=int, default=16, help="seeds for the compile comparison")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}, jax {jax.__version__}")
    for name, fn in (("vmap", bench_vmap), ("overhead", bench_overhead), ("flops", bench_flops),
                     ("compile", bench_compile), ("dense", bench_dense)):
        if a.what in (name, "all"):
            fn(a)


if __name__ == "__main__":
    main()
