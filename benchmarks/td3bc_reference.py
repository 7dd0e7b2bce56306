"""Our TD3+BC against the reference implementation's algorithm on the same dataset: scores and updates/s.

    python benchmarks/td3bc_reference.py            # 5 seeds x 4,000 critic updates each side (<= 10 min on 2 cores)
    python benchmarks/td3bc_reference.py --full     # the reference's length: 1,000,000 critic updates per seed
    python benchmarks/td3bc_reference.py --seeds 8 --updates 50000 --eval-episodes 10 [--reference-options]
    python benchmarks/td3bc_reference.py -- dataset.root=/data/minari    # any offline_to_online override

The dataset is ``setting=offline_to_online``'s config default (our own halfcheetah medium dataset,
made by ``lossmooth data collect task=halfcheetah``; the regime of ``offline_to_online_medium``); where it is not on this machine
the script prints the command that prepares it and exits 2. Both sides train TD3+BC with the
reference's hyperparameters (CORL's ``td3_bc.py``: 256-256 networks, batch 256, Adam 3e-4, discount
0.99, tau 5e-3, policy noise 0.2 clipped at 0.5, policy delay 2, alpha 2.5, states normalized with the
dataset's mean and std + 1e-3) for the same number of critic updates and the same seeds:

- **ours**: the setting's own offline phase (:func:`lossmooth.settings.offline_to_online.objective.offline_init`
  and ``offline_chunk``'s training program: every seed in one ``jit(vmap(scan))``), as the default runs
  it (its critic loss is optax's ``l2_loss``, half the reference's; ``--reference-options`` uses the
  reference's full squared error, ``critic_squared_error="full"``);
- **reference**: :class:`benchmarks.td3bc_torch.TorchTD3BC` (PyTorch, one ``train`` call per critic
  update, one learner per seed, ``torch.set_num_threads`` = the cores JAX uses).

The training is interleaved in up to 8 slices (ours: its program for a slice of the updates, every
seed; then each reference learner for the same slice), so load from other processes slows both alike.

One evaluator scores both: the setting's (:func:`lossmooth.rl.agents.evaluate`: the deterministic
policy's mean return over ``--eval-episodes`` brax episodes, normalized with the dataset's references);
the reference's actor is handed to it as our actor's parameters, with our run's evaluation key of the
same seed, so both face the same episodes. Printed: per implementation the normalized score's mean
and 95% Student-t CI over seeds (:func:`lossmooth.results.inference.t_interval`), critic updates/s
(all seeds' updates over the training's wall time, compile excluded), their ratio, and whether the
targets hold (our mean inside the reference's CI; ours >= 3x the reference's updates/s).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# PyTorch's OpenMP threads otherwise spin after each op, taking the cores from JAX
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_SEEDS, DEFAULT_UPDATES, FULL_UPDATES = 5, 4_000, 1_000_000
SPEED_TARGET = 3.0


def spec_and_data(overrides: list[str], seeds: int, updates: int, episodes: int, hidden: int):
    """The offline-to-online config default's spec (the medium dataset) with the reference's network size, ``seeds`` seeds,
    ``updates`` offline critic updates and ``episodes`` evaluation episodes, and its dataset."""
    from lossmooth.runner.compose import compose
    from lossmooth.settings.offline_to_online.config import parse
    from lossmooth.settings.offline_to_online.data import load_dataset

    cfg = compose(["setting=offline_to_online", f"num_seeds={seeds}", f"setting.source_steps={updates}",
                   f"setting.source_eval_every={updates}", f"setting.eval_episodes={episodes}",
                   f"td3.hidden_layer_sizes=[{hidden},{hidden}]"] + overrides)
    spec = parse(cfg)
    return spec, load_dataset(spec)


def train_both(agents, spec, data, threads: int, hidden: int, slices: int = 8):
    """Both implementations, their training interleaved in ``slices`` slices so that other load on the
    machine falls on both alike: ours = the setting's offline phase, every seed in one program called
    once per slice; the reference = one PyTorch learner per seed, each run for its share of the slice.
    Returns (our final state, the reference's actors per seed, our and the reference's critic updates/s,
    our compile seconds)."""
    import jax

    from benchmarks.td3bc_torch import TorchTD3BC
    from lossmooth.core import engine
    from lossmooth.settings.offline_to_online import objective as O

    rounds = spec.source_steps // agents.adapt.policy_delay
    slices = max(k for k in range(1, slices + 1) if rounds % k == 0)
    state = O.offline_init(agents, spec, data)
    hp = engine.stack_runs([agents.adapt] * spec.num_seeds)
    buf = O.dataset_buffer(data)
    t = time.perf_counter()
    prog = O.offline_chunk(agents, rounds // slices).train.lower(state, hp, buf).compile()
    compile_s = time.perf_counter() - t
    refs = [TorchTD3BC(data.obs_dim, data.act_dim, data, seed=spec.seed + i, threads=threads, hidden=hidden)
            for i in range(spec.num_seeds)]
    per_slice = spec.source_steps // slices
    t_ours = t_ref = 0.0
    for _ in range(slices):
        t = time.perf_counter()
        state, _ = jax.block_until_ready(prog(state, hp, buf))
        t_ours += time.perf_counter() - t
        t = time.perf_counter()
        for ref in refs:
            for _ in range(per_slice):
                ref.train()
        t_ref += time.perf_counter() - t
    total = spec.num_seeds * spec.source_steps
    return state, [ref.actor_flax() for ref in refs], total / t_ours, total / t_ref, compile_s


def roofline(ups_ours: float, ups_ref: float, peak: float, obs: int, act: int, hidden: int, batch: int,
             delay: int, actor_critic: str) -> str:
    """Both sides' model matmul FLOP/s (:func:`benchmarks.offline_speed.model_flops` per critic update:
    a TD3+BC iteration's over its ``delay`` critic updates) as shares of this machine's float32 matmul
    peak, and the ratio no program could pass on it: the peak over our FLOPs per update, over the
    reference's updates/s."""
    from benchmarks.offline_speed import model_flops

    ours = model_flops(obs, act, hidden, batch, 1 if actor_critic == "first" else 2) / delay
    ref = model_flops(obs, act, hidden, batch, 1) / delay  # the reference's actor: the first critic's Q
    g_o, g_r = ups_ours * ours, ups_ref * ref
    need = SPEED_TARGET * ups_ref * ours
    return (f"model matmuls per critic update: ours {ours / 1e6:.0f} MFLOP, the reference {ref / 1e6:.0f} MFLOP; "
            f"ours {g_o / 1e9:.1f} GFLOP/s = {100 * g_o / peak:.0f}% of this machine's float32 matmul peak "
            f"({peak / 1e9:.1f} GFLOP/s, jnp.dot of 1024^2 and 2048^2 matrices), the reference {g_r / 1e9:.1f} "
            f"GFLOP/s = {100 * g_r / peak:.0f}%; {SPEED_TARGET:.0f}x the reference needs {need / 1e9:.1f} GFLOP/s = "
            f"{100 * need / peak:.0f}% of the peak; at the whole peak ours would be {peak / ours / ups_ref:.2f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    p.add_argument("--updates", type=int, default=DEFAULT_UPDATES, help="critic updates per seed, each side")
    p.add_argument("--full", action="store_true", help=f"the reference's length: {FULL_UPDATES} critic updates")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (the reference's: 10)")
    p.add_argument("--hidden", type=int, default=256, help="hidden width of both networks (the reference's: 256)")
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores, as XLA uses)")
    p.add_argument("--reference-options", action="store_true",
                   help="ours with the reference's full squared-error critic loss (default: the setting's)")
    p.add_argument("overrides", nargs="*", help="offline_to_online config overrides (after --)")
    a = p.parse_args(argv)
    updates = FULL_UPDATES if a.full else a.updates

    with contextlib.redirect_stdout(sys.stderr):  # the simulators' import chatter stays off stdout
        import jax
        import numpy as np

        from lossmooth.errors import ConfigError
        from lossmooth.offline import scores
        from lossmooth.results.inference import t_interval
        from lossmooth.rl import agents as A
        from lossmooth.settings.offline_to_online import objective as O

    try:
        with contextlib.redirect_stdout(sys.stderr):  # the simulators' import chatter stays off stdout
            spec, data = spec_and_data(a.overrides, a.seeds, updates, a.eval_episodes, a.hidden)
    except ConfigError as e:
        print(f"td3bc_reference: {e}")
        return 2
    from benchmarks.peak import matmul_peak
    peak = matmul_peak()  # before PyTorch loads (its threads would share the cores)
    try:
        import torch
    except ImportError:
        print("td3bc_reference: PyTorch is not installed; `pip install torch==2.13.0` (the CPU build) and run again")
        return 2
    if a.reference_options:
        spec = dataclasses.replace(spec, algos={"td3": {**spec.algos["td3"], "critic_squared_error": "full"}})
    with contextlib.redirect_stdout(sys.stderr):
        agents = O.build_agents(spec, data, spec.num_seeds)
    threads = a.threads or os.cpu_count()

    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    state, actors, ups_ours, ups_ref, compile_s = train_both(agents, spec, data, threads, a.hidden)
    t = time.perf_counter()
    ret_ours = np.asarray(A.evaluate(agents, state)["target_return"])
    ref_state = state.replace(actor_ts=state.actor_ts.replace(params=jax.tree.map(lambda *x: np.stack(x), *actors)))
    ret_ref = np.asarray(A.evaluate(agents, ref_state)["target_return"])
    eval_s = time.perf_counter() - t

    lo_ref_score, hi_ref_score = data.ref_scores
    s_ours = np.asarray(scores.normalized(ret_ours, data.ref_scores))
    s_ref = np.asarray(scores.normalized(ret_ref, data.ref_scores))
    (m_o,), (lo_o,), (hi_o,) = t_interval(s_ours[:, None])
    (m_r,), (lo_r,), (hi_r,) = t_interval(s_ref[:, None])
    ratio = ups_ours / ups_ref
    within = bool(lo_r <= m_o <= hi_r)
    td3 = spec.algos["td3"]
    print(f"TD3+BC, ours vs the reference (CORL td3_bc.py's algorithm, PyTorch {torch.__version__}) on "
          f"{data.name} (sha256 {data.content_hash()[:8]}, {len(data)} transitions, refs {lo_ref_score:.1f} / "
          f"{hi_ref_score:.1f}), {spec.num_seeds} seeds x {updates} critic updates each side, "
          f"{a.hidden}-{a.hidden} nets, batch {td3['batch_size']}, {a.eval_episodes} evaluation episodes "
          f"on brax {spec.task} ({spec.backend}); CPU: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {threads} PyTorch threads, jax {jax.__version__}")
    print(f"  ours ({'critic loss (q - y)^2' if a.reference_options else 'critic loss (q - y)^2 / 2, the default'}): "
          f"normalized score {m_o:.1f} [{lo_o:.1f}, {hi_o:.1f}] (per seed "
          f"{', '.join(f'{x:.1f}' for x in s_ours)}); {ups_ours:.0f} critic updates/s (all seeds in one "
          f"program, called once per slice; compile {compile_s:.1f}s)")
    print(f"  reference: normalized score {m_r:.1f} [{lo_r:.1f}, {hi_r:.1f}] (per seed "
          f"{', '.join(f'{x:.1f}' for x in s_ref)}); {ups_ref:.0f} critic updates/s (one learner per seed, each run for its share of every slice)")
    print(f"  speed ratio ours / reference {ratio:.2f}; evaluation {eval_s:.0f}s; total {time.perf_counter() - t0:.0f}s; "
          f"1-min load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other processes "
          "on the cores slow both sides)")
    print("  " + roofline(ups_ours, ups_ref, peak, data.obs_dim, data.act_dim, a.hidden, td3["batch_size"],
                          td3["policy_delay"], td3.get("actor_critic", "mean")))
    print(f"  target: our mean score within the reference's 95% CI: {'met' if within else 'NOT met'}; "
          f"ours >= {SPEED_TARGET:.0f}x the reference's updates/s: {'met' if ratio >= SPEED_TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
