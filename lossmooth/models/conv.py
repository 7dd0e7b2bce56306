"""Convolution as im2col + matmul, a drop-in for ``lax.conv_general_dilated`` in ``flax.linen.Conv``.

Why: on XLA's CPU backend a native convolution inside a ``lax.scan`` body runs an order of
magnitude slower than outside one, and ``vmap`` over per-run kernels turns every convolution into a
grouped convolution, which is slower still. Gathering the kh x kw shifted (strided) views of the
padded input and contracting them with the reshaped kernel,

    y[n, i, j, o] = sum_{a, b, c} x_pad[n, s_h i + a, s_w j + b, c] * w[a, b, c, o],

keeps the work a plain matmul in both cases (a batched matmul under vmap). A depthwise
convolution (``feature_group_count`` = input channels, kernel ``[kh, kw, 1, C]``) is the same sum
without the contraction over channels,

    y[n, i, j, c] = sum_{a, b} x_pad[n, s_h i + a, s_w j + b, c] * w[a, b, 0, c],

kh x kw elementwise multiply-adds: XLA's CPU backend runs a grouped convolution's backward pass
(the kernel gradient above all) tens of times slower. The result equals
``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels up to float rounding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("auto", "im2col", "native")


def conv_fn(impl: str = "auto"):
    """The convolution ``flax.linen.Conv`` calls: ``im2col`` (:func:`im2col_conv`), ``native``
    (``lax.conv_general_dilated``), or ``auto``: im2col on XLA's CPU backend (see the module
    docstring), XLA's native convolution on GPU and TPU, whose convolution kernels are their fast path."""
    if impl == "auto":
        impl = "im2col" if jax.default_backend() == "cpu" else "native"
    return im2col_conv if impl == "im2col" else lax.conv_general_dilated


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                precision=None, preferred_element_type=None):
    """NHWC x HWIO convolution via shifted views + one matmul, or a depthwise one via shifted
    multiply-adds (no dilation; other feature groupings fall back to XLA's convolution)."""
    depthwise = feature_group_count == lhs.shape[-1] == rhs.shape[-1] and rhs.shape[2] == 1
    if ((feature_group_count != 1 and not depthwise) or batch_group_count != 1
            or any(d != 1 for d in (lhs_dilation or (1, 1)))
            or any(d != 1 for d in (rhs_dilation or (1, 1)))):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count,
                                        precision, preferred_element_type)
    kh, kw, cin, cout = rhs.shape
    sh, sw = window_strides
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
    xp = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    cols = [xp[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :]
            for a in range(kh) for b in range(kw)]
    if depthwise:
        return sum(col * rhs[a, b, 0] for col, (a, b) in zip(cols, ((a, b) for a in range(kh) for b in range(kw))))
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)  # features (kh, kw, C)
    return jnp.matmul(patches, rhs.reshape(kh * kw * cin, cout), precision=precision)
