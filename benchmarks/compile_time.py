"""What the flat threefry lowering (:mod:`lossmooth.core.threefry`) saves: XLA compile seconds and wall
seconds of a short supervised run, with it and with JAX's own CPU lowering of the hash, each in a
fresh process with the compilation cache off, interleaved; and whether the two runs wrote the same
bytes (``metrics.jsonl``, ``runs.json``). First, in this process, the compile seconds of single draws
both ways: a vector, a rank-4 array, and a vmapped truncated normal for one 3x3 convolution kernel.

    python benchmarks/compile_time.py [--repeats 2] [--seeds 4] [override ...]

Prints the draws' lines, one line per process, then the medians and their ratio.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from jax import monitoring
compile_s = []
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compile_s.append(duration) if event.endswith("backend_compile_duration") else None)
from lossmooth.core import threefry
if {jax_own!r}:  # JAX's own CPU lowering of the hash back in place
    from jax._src.interpreters import mlir
    mlir.register_lowering(threefry._threefry.threefry2x32_p, threefry._JAX_RULE, platform="cpu")
from lossmooth.runner import run_config
from lossmooth.runner.compose import compose
cfg = compose({overrides!r})
cfg["results_dir"], cfg["cache_dir"] = {out!r}, None
t = time.time()
path = run_config(cfg, {{}}, progress=False)
print(json.dumps({{"wall": time.time() - t, "compile": sum(compile_s), "programs": len(compile_s), "path": path}}))
"""


def one(jax_own: bool, overrides: list[str], out: str) -> dict:
    code = CHILD.format(root=ROOT, jax_own=jax_own, overrides=overrides, out=out)
    env = dict(os.environ, WANDB_MODE="disabled", JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def draws() -> None:
    """Each draw compiled with JAX's own lowering and with the flat one (fresh compiles, cache off)."""
    import time

    import jax
    from jax._src.interpreters import mlir

    from lossmooth.core import threefry

    jax.config.update("jax_enable_compilation_cache", False)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    cases = {"bits of 120 values": lambda k: jax.random.bits(k[0], (120,)),
             "bits of shape (2, 3, 4, 5)": lambda k: jax.random.bits(k[0], (2, 3, 4, 5)),
             "vmapped truncated normal (3, 3, 3, 4)": jax.vmap(lambda k: jax.random.truncated_normal(k, -2.0, 2.0,
                                                                                                 (3, 3, 3, 4)))}
    seconds = {}
    for name, rule in (("jax", threefry._JAX_RULE), ("flat", threefry._cpu_lowering)):
        mlir.register_lowering(threefry._threefry.threefry2x32_p, rule, platform="cpu")
        for case, f in cases.items():
            jax.clear_caches()
            t = time.time()
            jax.jit(f).lower(keys).compile()
            seconds[name, case] = time.time() - t
    for case in cases:
        print(f"{case}: compile {seconds['flat', case]:.2f} s flat, {seconds['jax', case]:.2f} s JAX's own lowering")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    draws()
    overrides = [f"num_seeds={a.seeds}", "setting.source_steps=40", "setting.source_evals_per_chunk=2",
                 "setting.adapt_steps=40", "setting.evals_per_chunk=2", "setting.eval_every=10",
                 "setting.smoothing_T=20", "setting.gap_window=20", "logger=jsonl", "progress=false", *a.overrides]
    got: dict[str, list[dict]] = {"flat": [], "jax": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for name in ("jax", "flat"):
                res = one(name == "jax", overrides, os.path.join(tmp, f"{name}{i}"))
                got[name].append(res)
                print(f"{name:4s} lowering, process {i + 1}: compile {res['compile']:.1f} s over {res['programs']} "
                      f"programs, run {res['wall']:.1f} s")
        same = all(filecmp.cmp(os.path.join(got["jax"][0]["path"], f), os.path.join(got["flat"][0]["path"], f),
                               shallow=False) for f in ("metrics.jsonl", "runs.json"))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("compile", "wall")} for k, v in got.items()}
    print(f"median XLA compile: flat {med['flat']['compile']:.1f} s, JAX's own {med['jax']['compile']:.1f} s "
          f"({med['flat']['compile'] / med['jax']['compile']:.2f}x); run (compile included): flat "
          f"{med['flat']['wall']:.1f} s, JAX's own {med['jax']['wall']:.1f} s ({med['flat']['wall'] / med['jax']['wall']:.2f}x)")
    print(f"metrics.jsonl and runs.json byte-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
