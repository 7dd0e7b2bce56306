"""Run phases of the supervised and LM settings on one device and spread over 4, in one process
started with 4 CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``), and print what
``test_sharding.py`` compares as one JSON line: each phase's metrics both ways, and each sharded
state's bytes on one device against the bytes of the whole state.

Usage: python tests/sharded_runs.py <work folder>
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

if __name__ == "__main__":  # not when pytest imports the module (--doctest-modules): its process keeps its devices
    os.environ["XLA_FLAGS"] = " ".join([f for f in os.environ.get("XLA_FLAGS", "").split()
                                        if not f.startswith("--xla_force_host_platform_device_count")]
                                       + ["--xla_force_host_platform_device_count=4"])
    os.environ.setdefault("WANDB_MODE", "disabled")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lossmooth.core import engine, sharding  # noqa: E402
from lossmooth.runner.execute import lam_at_switch  # noqa: E402
from lossmooth.runner.phase import place_phase, run_phase  # noqa: E402
from lossmooth.settings import Context, get as get_setting  # noqa: E402
from tests.conftest import TINY, compose  # noqa: E402


def metrics_of(res) -> dict:
    return {k: np.asarray(v, np.float64).tolist() for k, v in res.metrics.items()}


def state_bytes(res) -> dict:
    """One device's bytes of the phase's final state, and the whole state's bytes."""
    return {"per_device": sharding.bytes_per_device(res.state),
            "whole": int(sum(x.nbytes for x in jax.tree.leaves(res.state))),
            "expected_per_device": int(sum(
                x.nbytes // (4 if any(sharding.leaf_spec(tuple(x.shape[1:]), 4)) else 1)
                for x in jax.tree.leaves(res.state)))}


def flops(phase, mesh) -> float:
    """XLA's FLOP count of the phase's chunk for one device, placed as the runner places it."""
    state, hp, pmesh = place_phase(phase, 1, mesh)
    with jax.set_mesh(pmesh) if pmesh is not None else contextlib.nullcontext():
        cost = phase.chunk.lower(state, hp, phase.data).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def both(make, go, mesh) -> dict:
    """The phase ``make()`` builds, run by ``go(phase, mesh)`` on one device, then spread over
    ``mesh``'s 4 devices (auto: one run, shard 4). Each run gets a phase of its own (a chunk may
    donate the state it is given), and the FLOPs are counted on phases of their own too."""
    one = go(make(), None)
    four = go(make(), mesh)
    placed = place_phase(make(), 1, mesh)[2]
    return {"one": metrics_of(one), "four": metrics_of(four), "bytes": state_bytes(four),
            "mesh": dict(zip(placed.axis_names, placed.axis_sizes)),
            "flops": {"one": flops(make(), None), "four": flops(make(), mesh)}}


def loaded(name: str, cfg: dict):
    """``(setting, context, runs)`` of a resolved config, its data loaded."""
    setting = get_setting(name)
    spec = setting.parse(cfg)
    data = setting.load(spec, cfg, {})
    return setting, Context(spec=spec, loaded=data, cfg=cfg), setting.runs(spec, data)


def supervised(mesh, results: str) -> dict:
    cfg = compose([*TINY, "num_seeds=1", "method=[loss_smoothing]", "model.hidden=64"])
    cfg.update(results_dir=results, cache_dir=None)
    setting, ctx, runs = loaded("supervised", cfg)

    def source():
        return setting.source_phase(ctx, "")

    out = {"source": both(source, run_phase, mesh)}
    src = run_phase(source(), None)

    def adapt():
        return setting.adapt_phase(ctx, "", runs, src)

    out["adapt"] = both(adapt, lambda phase, m: run_phase(phase, m, lam0=lam_at_switch(runs)), mesh)
    return out


def lm(mesh, work: str) -> dict:
    from pathlib import Path

    from tests.lm_fixtures import smollm2_tokenizer, write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(Path(work) / "tiny-llama", smollm2_tokenizer())
    cfg = compose(["setting=lm", "num_seeds=1", "method=[loss_smoothing]", "lm_model=olmo_1b",
                   "lm_model.name=tiny-llama", f"lm_model.path={ckpt}", "lm_model.template=chatml",
                   "lm_model.dtype=float32", "lm_model.remat=false", "lm_target=chitchat",
                   "lm_target.max_conversations=60", "lm_replay.max_documents=60", "lm_budget.seq_len=32",
                   "lm_budget.micro_batch=4", "lm_budget.accum=2", "setting.adapt_steps=4", "lm_budget.warmup=1",
                   "lm_budget.lr=0.01", "setting.eval_every=2", "lm_budget.eval_rows=8",
                   "lm_budget.eval_micro_batch=4", "setting.smoothing_T=2", "setting.gap_window=2", "judge=none"])
    cfg.update(results_dir=os.path.join(work, "results"), cache_dir=None)
    setting, ctx, runs = loaded("lm", cfg)

    def adapt():
        return setting.adapt_phase(ctx, "", runs, None)

    return {"adapt": both(adapt, lambda phase, m: run_phase(phase, m, lam0=lam_at_switch(runs)), mesh)}


def main():
    work = sys.argv[1]
    assert len(jax.devices()) == 4, jax.devices()
    mesh = engine.run_mesh()
    out = {"supervised": supervised(mesh, os.path.join(work, "results")), "lm": lm(mesh, work)}
    print("SHARDED " + json.dumps(out))


if __name__ == "__main__":
    main()
