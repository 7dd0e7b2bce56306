"""Speed and memory figures of offline TD3+BC (prints them; asserts nothing).

    python benchmarks/offline_speed.py updates   # critic updates/s: our jitted scan vs PyTorch TD3+BC
    python benchmarks/offline_speed.py flops     # the update's FLOP/s as a fraction of the matmul peak
    python benchmarks/offline_speed.py memory    # peak memory of the dataset + buffer path at 1M transitions
    python benchmarks/offline_speed.py all       [--obs 17 --act 6 --hidden 256 --batch 256]

``updates`` needs PyTorch (``pip install torch==2.13.0``, the CPU build). Both sides train the same
TD3+BC on the same synthetic dataset (hopper-sized by default; D4RL's reference networks: 256-256
ReLU actor and twin critics, batch 256, policy delay 2, Adam 3e-4): ours is
:meth:`lossmooth.rl.td3.SmoothedTD3.offline_iteration` in a jitted ``lax.scan``; PyTorch's is a
port of the reference ``TD3_BC.train`` (Fujimoto & Gu's, as CORL's ``td3_bc.py`` has it;
``benchmarks/td3bc_torch.py``, shared with ``td3bc_reference.py``: one Python call per critic update,
the actor and targets every second one) with ``torch.set_num_threads`` = the cores JAX uses.
Throughput counts critic updates (each iteration = ``policy_delay`` critic updates + 1 actor update),
compile time excluded, best of --repeats interleaved timings.

``flops``: the compiled iteration's FLOPs from XLA's cost analysis (and an analytic count of the
model's matmuls), per second of the measured update rate, over this machine's float32 matmul peak
measured with ``jnp.dot`` on 2048 x 2048 matrices.

``memory``: a subprocess writes a 1M-transition D4RL-format hdf5 file; another loads it with
:func:`lossmooth.offline.datasets.load_d4rl`, turns it into the replay buffer, runs TD3+BC
iterations on it, and reports its peak resident memory next to the raw size of the arrays.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.peak import compiled_flops, matmul_peak  # noqa: E402  (jax only: PyTorch loads later)
# PyTorch's OpenMP threads otherwise spin after each op, taking the cores from the JAX timings
# interleaved with them
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def synthetic(n: int, obs: int, act: int, seed: int = 0):
    import numpy as np

    from lossmooth.offline import datasets as D

    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, obs)).astype(np.float32)
    nxt = (o + 0.1 * rng.normal(size=(n, obs))).astype(np.float32)
    a = rng.uniform(-1, 1, (n, act)).astype(np.float32)
    r = rng.normal(size=n).astype(np.float32)
    term = rng.random(n) < 0.001
    timeout = np.zeros(n, bool)
    timeout[999::1000] = True
    timeout &= ~term
    timeout[-1] = not term[-1]
    return D.transitions(o, a, r, nxt, term, timeout, name="synthetic")


def jax_td3bc(obs: int, act: int, hidden: int, batch: int, data, in_state: bool = True):
    """Our TD3+BC agent (the setting's construction, on a spaces-only environment) and its state
    (the dataset in the state's ``source_buffer`` where ``in_state``, else left to the caller)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lossmooth.offline import datasets as D
    from lossmooth.rl.host_loop import SpacesEnv
    from lossmooth.rl.td3 import SmoothedTD3

    env = SpacesEnv(obs, -np.ones(act, np.float32), np.ones(act, np.float32), 1000)
    kw = {"hidden_layer_sizes": [hidden, hidden], "activation": "relu"}
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, batch_size=batch, policy_delay=2,
                              learning_rate=3e-4, max_grad_norm=1e6, polyak=0.995, target_update_freq=1,
                              normalize_observations=True, freeze_obs_rms=True, buffer_size=batch,
                              actor_kwargs=kw, critic_kwargs=kw).replace(source_bc_alpha=jnp.asarray(2.5))
    mean, std = data.state_stats()
    ts = algo.init_state(jax.random.PRNGKey(0))
    if in_state:
        ts = ts.replace(source_buffer=D.as_replay_buffer(data))
    ts = ts.replace(obs_rms_state=ts.obs_rms_state.replace(mean=jnp.asarray(mean), var=jnp.asarray(std ** 2)))
    return algo, ts


def jax_program(algo, iters: int):
    import jax

    return jax.jit(lambda ts: jax.lax.scan(lambda s, _: (algo.offline_iteration(s), None), ts, None, iters)[0])


def torch_td3bc(obs: int, act: int, hidden: int, batch: int, data, threads: int):
    """The PyTorch reference TD3+BC (:mod:`benchmarks.td3bc_torch`): its ``train``, called once per
    critic update."""
    from benchmarks.td3bc_torch import TorchTD3BC

    return TorchTD3BC(obs, act, data, seed=0, threads=threads, hidden=hidden, batch_size=batch).train


def updates(args):
    import jax

    try:
        import torch
    except ImportError:
        print("updates: PyTorch is not installed; `pip install torch==2.13.0` (the CPU build) and run again")
        return None
    data = synthetic(args.n, args.obs, args.act)
    algo, ts = jax_td3bc(args.obs, args.act, args.hidden, args.batch, data)
    iters = args.iters
    t = time.perf_counter()
    prog = jax_program(algo, iters).lower(ts).compile()
    compile_s = time.perf_counter() - t
    threads = args.threads or os.cpu_count()
    train = torch_td3bc(args.obs, args.act, args.hidden, args.batch, data, threads)
    crit = iters * algo.policy_delay  # critic updates per timed call
    best_j, best_t = float("inf"), float("inf")
    for _ in range(args.repeats):
        jax.block_until_ready(prog(ts))
        t = time.perf_counter()
        jax.block_until_ready(prog(ts))
        best_j = min(best_j, time.perf_counter() - t)
        for _ in range(20):
            train()
        t = time.perf_counter()
        for _ in range(crit):
            train()
        best_t = min(best_t, time.perf_counter() - t)
    uj, ut = crit / best_j, crit / best_t
    print(f"TD3+BC offline, obs {args.obs} act {args.act}, {args.hidden}-{args.hidden} nets, batch {args.batch}, "
          f"{args.n} transitions, CPU with {threads} threads: ours (jax {jax.__version__}, jitted scan of "
          f"{iters} iterations) {uj:.0f} critic updates/s; PyTorch {torch.__version__} reference loop "
          f"{ut:.0f} critic updates/s; ratio {uj / ut:.2f} (target >= 1.5); our compile {compile_s:.1f}s")
    return uj, algo, ts


def model_flops(obs: int, act: int, h: int, batch: int, actor_critics: int = 2) -> float:
    """Analytic matmul FLOPs of one TD3+BC iteration (2 critic updates + 1 actor update), 2 per MAC.
    A backward pass for weight and input gradients costs twice its forward; through the critics in
    the actor update only the input gradients are needed (once its forward). ``actor_critics``: the
    critics the actor's Q term runs through (rejax: both; the reference, and ours under its options:
    the first)."""
    mlp = lambda i, o: i * h + h * h + h * o  # noqa: E731  (MACs per sample)
    actor, critic = mlp(obs, act), mlp(obs + act, 1)
    crit_update = actor + 2 * critic + 3 * (2 * critic)  # target actor + target critics; critics fwd + bwd
    actor_update = 3 * actor + actor_critics * (2 * critic)  # actor fwd + bwd; critics fwd + input bwd
    return 2.0 * batch * (2 * crit_update + actor_update)


def flops(args, measured=None, peak=None):
    import jax

    if measured is None:
        data = synthetic(min(args.n, 100_000), args.obs, args.act)
        algo, ts = jax_td3bc(args.obs, args.act, args.hidden, args.batch, data)
        prog = jax_program(algo, args.iters).lower(ts).compile()
        jax.block_until_ready(prog(ts))
        t = time.perf_counter()
        jax.block_until_ready(prog(ts))
        ups = args.iters * algo.policy_delay / (time.perf_counter() - t)
    else:
        ups, algo, ts = measured
    one = jax.jit(algo.offline_iteration).lower(ts).compile()
    xla = compiled_flops(one)
    analytic = model_flops(args.obs, args.act, args.hidden, args.batch)
    peak = peak or matmul_peak()
    per_s = ups / algo.policy_delay * analytic
    print(f"FLOPs per TD3+BC iteration: analytic model matmuls {analytic / 1e6:.1f} MFLOP, XLA cost analysis "
          f"{xla / 1e6:.1f} MFLOP; at {ups:.0f} critic updates/s that is {per_s / 1e9:.2f} GFLOP/s of model "
          f"matmuls ({ups / algo.policy_delay * xla / 1e9:.2f} GFLOP/s by XLA's count); float32 matmul peak "
          f"(2048^3 jnp.dot) {peak / 1e9:.1f} GFLOP/s: {100 * per_s / peak:.1f}% of peak")


WRITE_CODE = r"""
import os, sys
sys.path.insert(0, os.getcwd())
from benchmarks.offline_speed import synthetic
from lossmooth.offline import datasets as D
D.save_d4rl(synthetic(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])), sys.argv[4])
"""

MEM_CODE = r"""
import os, sys, time
sys.path.insert(0, os.getcwd())
import numpy as np
import jax, jax.numpy as jnp
from benchmarks.offline_speed import synthetic, jax_td3bc, jax_program
from lossmooth.offline import datasets as D
n, obs, act, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import rejax.buffers, lossmooth.rl.td3, lossmooth.rl.host_loop, lossmooth.rl.agents  # noqa: E401
jax.block_until_ready(jnp.ones(1) + 1)  # the runtime's and libraries' own memory, before any data


def rss():  # peak RSS of this process image (getrusage's maxrss survives exec from a larger parent)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024


base = rss()
t0 = time.perf_counter()
data = D.load_d4rl(path, "synthetic")
load_s = time.perf_counter() - t0
after_load = rss()
# as the setting holds it: the dataset once, unbatched, as the programs' ``data`` argument
from lossmooth.rl.agents import with_shared_source
algo, ts = jax_td3bc(obs, act, 256, 256, data, in_state=False)
buf = jax.block_until_ready(D.as_replay_buffer(data))
after_buffer = rss()
prog = jax.jit(lambda ts, d: jax.lax.scan(
    lambda s, _: (with_shared_source(s, d, algo.offline_iteration), None), ts, None, 16)[0])
compiled = prog.lower(ts, buf).compile()
after_compile = rss()
jax.block_until_ready(compiled(ts, buf))
raw = sum(a.nbytes for a in (data.observations, data.actions, data.rewards, data.next_observations,
                             data.terminals, data.timeouts))
print("MEM", raw, rss(), base, load_s, after_load, after_buffer, after_compile)
"""


def memory(args):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "synthetic.hdf5")
        subprocess.run([sys.executable, "-c", WRITE_CODE, str(args.mem_n), str(args.obs), str(args.act), path],
                       check=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
        r = subprocess.run([sys.executable, "-c", MEM_CODE, str(args.mem_n), str(args.obs), str(args.act), path],
                           capture_output=True, text=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("MEM")]
        if not line:
            print("memory: FAILED", r.stderr[-500:])
            return
        raw, peak, before, load_s, loaded, buffered, compiled = (float(x) for x in line[0].split()[1:])
        mib = lambda x: f"{x / 2**20:.0f} MiB"  # noqa: E731
        print(f"dataset + buffer path at {args.mem_n} transitions (obs {args.obs}, act {args.act}): arrays "
              f"{mib(raw)}; hdf5 load {load_s:.1f}s. Peak RSS: JAX and the libraries before any data {mib(before)}; "
              f"after loading the D4RL file {mib(loaded)}; after building the replay buffer {mib(buffered)}; "
              f"after compiling the TD3+BC scan {mib(compiled)}; after 16 iterations {mib(peak)}. Data path "
              f"(load + buffer + run, compile excluded) {mib(buffered - before + peak - compiled)} = "
              f"{(buffered - before + peak - compiled) / raw:.2f}x the arrays")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["updates", "flops", "memory", "all"])
    p.add_argument("--obs", type=int, default=11)
    p.add_argument("--act", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=100_000, help="dataset transitions for the speed runs")
    p.add_argument("--mem-n", type=int, default=1_000_000, help="dataset transitions for the memory run")
    p.add_argument("--iters", type=int, default=200, help="TD3+BC iterations per timed call")
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores, as XLA uses)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    measured = None
    peak = matmul_peak() if a.what in ("flops", "all") else None  # before PyTorch is loaded
    if a.what in ("updates", "all"):
        measured = updates(a)
    if a.what in ("flops", "all"):
        flops(a, measured, peak)
    if a.what in ("memory", "all"):
        memory(a)


if __name__ == "__main__":
    main()
