"""Speed and memory of the pretrained-vision setting's vmapped adaptation (prints them; asserts nothing).

    python benchmarks/vision_speed.py [--size 32] [--runs 12] [--steps 20] [--repeats 3]

Builds the embedded default's data and EfficientNet-Lite0, then times one compiled adaptation
chunk (``--steps`` updates of every run, vmapped) twice: during the ramp (target and source batch
per update) and after it (target batch only). It prints training images per second (images whose
forward and backward pass the chunk computes, both batches counted), the compile time of each
program separately from its run time, and the process's peak resident memory. Best of --repeats.
Then the ramp's model FLOP/s as a share of this machine's float32 matmul peak (XLA's cost analysis of
one vmapped update, times the updates; ``benchmarks/peak.py``).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.peak import compiled_flops, matmul_peak, share_line  # noqa: E402
from lossmooth.core import engine  # noqa: E402
from lossmooth.models import classifiers  # noqa: E402
from lossmooth.core.runs import expand_runs  # noqa: E402
from lossmooth.runner.compose import compose  # noqa: E402
from lossmooth.settings.supervised.config import parse  # noqa: E402
from lossmooth.settings.supervised.data import build_data  # noqa: E402
from lossmooth.settings.supervised.setting import Programs, seed_keys  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32, help="image size (px)")
    p.add_argument("--runs", type=int, default=12, help="vmapped runs (the default: 3 methods x 4 seeds)")
    p.add_argument("--steps", type=int, default=20, help="updates per timed chunk")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cfg = compose(["setting=pretrained_vision", "logger=jsonl", f"data.image_size={a.size}",
                   f"setting.eval_every={a.steps}", "setting.evals_per_chunk=1", "setting.eval_size=32",
                   f"num_seeds={a.runs}", "method=[loss_smoothing]", f"schedule.T={10 ** 6}"])
    spec = parse(cfg)
    data, info = build_data(spec)
    print(f"data: {info['dataset']} at {a.size} px; peak RSS after loading {peak_rss_mib():.0f} MiB")
    model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
    progs = Programs(spec, model, info["num_classes"])
    keys = seed_keys(spec)
    params = jax.vmap(lambda k: progs.init_source(k, data.source_x)["params"])(keys)
    runs = expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)
    hp = {"key": keys, "method": engine.stack_runs([r["method"] for r in runs]),
          "lr": jnp.full((len(runs),), spec.lr, jnp.float32)}
    state = jax.vmap(lambda q, h: progs.init_adapt({"params": q}, h, "none"))(params, hp)
    sig = runs[0]["method"].signature
    ramp_s = None
    for label, fn, per_update in (("during the ramp (target + source batch)", progs.adapt_chunk(sig, True),
                                   spec.target_batch + spec.source_batch),
                                  ("after the ramp (target batch only)", progs.adapt_chunk(sig, False),
                                   spec.target_batch)):
        t = time.perf_counter()
        compiled = fn.lower(state, hp, data).compile()
        compile_s = time.perf_counter() - t
        jax.block_until_ready(compiled(state, hp, data))  # warm
        best = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            jax.block_until_ready(compiled(state, hp, data))
            best = min(best, time.perf_counter() - t)
        # the chunk also evaluates once (eval_size images per domain per run): not counted as training
        images = a.runs * a.steps * per_update
        ramp_s = best if ramp_s is None else ramp_s
        print(f"{label}: {images / best:.0f} training images/s ({a.runs} runs x {a.steps} updates x "
              f"{per_update} images in {best:.2f} s, evaluation included); compile {compile_s:.1f} s")
    # XLA's cost analysis counts a loop body once: ask it about one vmapped update of the ramp
    one_step = jax.jit(jax.vmap(progs.adapt_step, in_axes=(0, 0, None), axis_name="runs"))
    flops = compiled_flops(one_step.lower(state, hp, data).compile()) * a.steps
    print(share_line(f"the ramp's chunk, {a.runs} runs x {a.steps} updates at {a.size} px", flops, ramp_s,
                     matmul_peak(repeats=a.repeats), "XLA cost analysis of one vmapped update x updates; the "
                     "chunk's time includes its one evaluation"))
    print("[flops] below the aim of 30%, EfficientNet-Lite0 is mostly depthwise convolutions (9 multiply-adds "
          "per output per channel: few FLOPs per byte moved), which do not run at matmul speed; not profiled further")
    print(f"peak RSS {peak_rss_mib():.0f} MiB ({jax.default_backend()}, {len(jax.devices())} device(s))")


if __name__ == "__main__":
    main()
