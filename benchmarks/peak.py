"""The machine's float32 matmul peak and a program's FLOPs, for the benchmarks' share-of-peak lines.

A share of peak is model FLOP/s (a training step's FLOPs over its measured time) divided by the best
FLOP/s of a plain ``jnp.dot`` of square float32 matrices on the same device, measured in the same
process. XLA's cost analysis counts a loop body once, so a program's FLOPs come from one step (one
vmapped update) compiled on its own, times the steps the timed program runs.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def matmul_peak(sizes=(1024, 2048), repeats: int = 5, dtype=jnp.float32) -> float:
    """Best FLOP/s of ``a @ a`` (``dtype``, float32 unless given; ``size`` x ``size``; 2 size^3 FLOPs)
    over ``sizes``."""
    peak = 0.0
    for m in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (m, m), dtype)
        mm = jax.jit(lambda x: x @ x)
        jax.block_until_ready(mm(a))
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(mm(a))
            peak = max(peak, 2 * m ** 3 / (time.perf_counter() - t))
    return peak


def compiled_flops(compiled) -> float:
    """FLOPs of a compiled program by XLA's cost analysis (loop bodies counted once)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def share_line(label: str, flops: float, seconds: float, peak: float, how: str, peak_name: str = "float32",
               tag: str = "[flops]") -> str:
    """One printed line: ``flops`` done in ``seconds`` as GFLOP/s and as a share of ``peak`` (the
    ``peak_name`` matmul's)."""
    got = flops / seconds
    return (f"{tag} {label}: {flops / 1e9:.2f} GFLOP ({how}) in {seconds:.3f} s = {got / 1e9:.1f} GFLOP/s; "
            f"{peak_name} matmul peak {peak / 1e9:.1f} GFLOP/s -> {100 * got / peak:.1f}% of peak (aim >= 30%)")
