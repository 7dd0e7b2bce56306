"""lossmooth: loss smoothing for stable adaptation under distribution shift, as a JAX/Flax suite.

The smoothed objective is ``(1 - lam_t) L_source + lam_t L_target`` with ``lam_t`` ramping from
``lam0`` to 1 over the first ``T`` adaptation steps (:mod:`lossmooth.core`).
"""
__version__ = "0.1.0"
