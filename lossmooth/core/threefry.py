"""Threefry on CPU over a flat array: the same random bits, a fraction of the compile time.

JAX lowers its ``threefry2x32`` hash on CPU as a rolled loop (5 iterations of 4 rounds) over an array
of the output's shape. XLA's CPU compiler takes time growing with that array's rank (a vmapped
truncated normal for one convolution kernel compiles several times slower than over the flat array:
``python benchmarks/compile_time.py`` prints both), which made a model's initialiser the largest
single compile of a small run. The hash is
elementwise over counters, keys and outputs,

    threefry(k1, k2, x1, x2)[i] = threefry(k1[i], k2[i], x1[i], x2[i])    (broadcast, any index i),

so running JAX's own loop over the flattened (row-major) operands and reshaping the outputs back gives
the same bits, every one: only the program XLA compiles changes. This module registers that lowering
for the CPU platform, for operands of rank 2 or more that no mesh splits (a sharded operand keeps
JAX's own lowering, whose partitioning the reshape would change). Importing it is enough; it is
imported by :mod:`lossmooth.core.engine`, the model and RL packages and the offline collector, before
anything compiles. It reads JAX's private lowering (``jax==0.10.2`` is pinned); where that is missing it
registers nothing and JAX compiles its own lowering: slower, the same bits.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

try:
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as _threefry
    _JAX_RULE = _threefry._threefry2x32_cpu_lowering_rule
except (ImportError, AttributeError):  # another JAX: keep its own lowering
    _threefry = None


def _unsharded(aval) -> bool:
    spec = getattr(getattr(aval, "sharding", None), "spec", ())
    return all(part is None for part in spec)


def _flat_hash(shape: tuple[int, ...]):
    """JAX's rolled-loop hash over the flattened operands (a size-1 operand stays a scalar, broadcast
    as before), reshaped back to ``shape``."""
    n = math.prod(shape)

    def flat(a):
        return a.reshape(()) if a.size == 1 else jnp.broadcast_to(a, shape).reshape(n)

    def hash_(k1, k2, x1, x2):
        y1, y2 = _threefry._threefry2x32_lowering(flat(k1), flat(k2), flat(x1), flat(x2), use_rolled_loops=True)
        return y1.reshape(shape), y2.reshape(shape)

    return mlir.lower_fun(hash_, multiple_results=True)


def _cpu_lowering(ctx, k1, k2, x1, x2):
    out = ctx.avals_out[0]
    if len(out.shape) < 2 or 0 in out.shape or not all(_unsharded(a) for a in (*ctx.avals_in, out)):
        return _JAX_RULE(ctx, k1, k2, x1, x2)
    return _flat_hash(tuple(out.shape))(ctx, k1, k2, x1, x2)


if _threefry is not None:
    mlir.register_lowering(_threefry.threefry2x32_p, _cpu_lowering, platform="cpu")
