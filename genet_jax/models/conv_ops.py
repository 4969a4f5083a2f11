"""Convolution kernels chosen per backend, as drop-in replacements for `lax.conv_general_dilated`.

XLA:CPU lowers a depthwise convolution (and its gradients) to a dense convolution over all
channels and keeps the diagonal, which made DW blocks 7-30x slower than they need to be on CPU
(benchmarks/speed_vs_pytorch.py measures both). With `conv_impl="taps"`:
  - a depthwise kxk conv is k*k strided slices of the padded input, each multiplied by one tap of
    the kernel and summed (XLA fuses this into one loop; autodiff gives equally cheap gradients);
  - a 1x1 conv is a matmul over channels (strided slice first for stride 2);
  - a dense kxk conv whose input is smaller than its kernel (late stages of 32x32 networks: a 5x5
    conv on 4x4 maps, a 3x3 on 2x2) is k*k matmuls of shifted slices: XLA:CPU's own convolution
    is 10-40x slower on those shapes (e.g. 654 vs 18 ms for 5x5, 256->256, 4x4, batch 64).
Global average pooling is a matmul with a ones vector under "taps": as a reduce, XLA:CPU's YNNPACK
fusion pulls everything upstream that it can into one fusion with it, and runs a depthwise conv
in there 6-7x slower (DW unit + head at 4x4, 1296 channels: 0.35 vs 0.05 ms/image).
Every other convolution, and anything with dilation or a non-NHWC layout, goes to lax. The
parameter shapes are those of `flax.linen.Conv`, so checkpoints do not depend on the choice.

`conv_impl="auto"` picks "taps" on CPU and "lax" (cuDNN / TPU convolutions) elsewhere; a MasterNet
resolves it once, when it is built, and carries the resolved name (results record it).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from genet_jax.arch.counting import conv_out_size

CONV_IMPLS = ("auto", "lax", "taps")


def resolve_conv_impl(conv_impl: str, platform: Optional[str] = None) -> str:
    """The kernels "auto" stands for on `platform` (default: JAX's default backend); others unchanged."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    if conv_impl == "auto":
        return "taps" if (platform or jax.default_backend()) == "cpu" else "lax"
    return conv_impl


def depthwise_conv_taps(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                        padding: Sequence[tuple[int, int]]) -> jax.Array:
    """Depthwise conv, NHWC input, kernel (kh, kw, 1, C). Products are summed in float32."""
    kh, kw, _, channels = kernel.shape
    n, h, w, _ = x.shape
    (sh, sw), (ph, pw) = strides, padding
    out_h, out_w = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    padded = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    taps = kernel.astype(acc_dtype)
    total = None
    for i in range(kh):
        for j in range(kw):
            window = lax.slice(padded, (0, i, j, 0), (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, channels),
                               (1, sh, sw, 1))
            term = window.astype(acc_dtype) * taps[i, j, 0]
            total = term if total is None else total + term
    return total.astype(x.dtype)


def dense_conv_taps(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
                    precision=None) -> jax.Array:
    """Dense conv as a sum over taps of (shifted slice) @ kernel[i, j]; accumulated in float32."""
    kh, kw, in_channels, _ = kernel.shape
    n, h, w, _ = x.shape
    (sh, sw), (ph, pw) = strides, padding
    out_h, out_w = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    padded = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    total = None
    for i in range(kh):
        for j in range(kw):
            window = lax.slice(padded, (0, i, j, 0), (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1,
                                                      in_channels), (1, sh, sw, 1))
            term = lax.dot_general(window, kernel[i, j], (((3,), (0,)), ((), ())), precision=precision,
                                   preferred_element_type=jnp.float32)
            total = term if total is None else total + term
    return total.astype(x.dtype)


def pointwise_conv_matmul(x: jax.Array, kernel: jax.Array, strides: Sequence[int], precision=None) -> jax.Array:
    """1x1 conv as a matmul over channels; kernel (1, 1, C_in, C_out)."""
    sh, sw = strides
    if sh > 1 or sw > 1:
        x = x[:, ::sh, ::sw]
    return lax.dot_general(x, kernel[0, 0], (((3,), (0,)), ((), ())), precision=precision)


def _is_nhwc_hwio(dimension_numbers, lhs_ndim: int) -> bool:
    if lhs_ndim != 4:
        return False
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, tuple) and len(dimension_numbers) == 3 and all(
            isinstance(d, str) for d in dimension_numbers):
        return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    return tuple(lhs_spec) == (0, 3, 1, 2) and tuple(rhs_spec) == (3, 2, 0, 1) and tuple(out_spec) == (0, 3, 1, 2)


def taps_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                              precision=None, preferred_element_type=None):
    """`lax.conv_general_dilated` with the depthwise, 1x1 and small-input dense cases routed to the kernels above."""
    undilated = all(d == 1 for d in (lhs_dilation or (1, 1))) and all(d == 1 for d in (rhs_dilation or (1, 1)))
    explicit_padding = not isinstance(padding, str)
    if (undilated and explicit_padding and batch_group_count == 1 and preferred_element_type is None
            and _is_nhwc_hwio(dimension_numbers, lhs.ndim)):
        in_channels, out_channels = lhs.shape[-1], rhs.shape[-1]
        kh, kw = rhs.shape[0], rhs.shape[1]
        padding = tuple(tuple(p) for p in padding)
        if feature_group_count == in_channels == out_channels and rhs.shape[2] == 1 and in_channels > 1:
            return depthwise_conv_taps(lhs, rhs, window_strides, padding)
        if feature_group_count == 1 and kh == kw == 1 and padding == ((0, 0), (0, 0)):
            return pointwise_conv_matmul(lhs, rhs, window_strides, precision)
        if feature_group_count == 1 and (lhs.shape[1] < kh or lhs.shape[2] < kw):
            return dense_conv_taps(lhs, rhs, window_strides, padding, precision)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type)


def conv_function(conv_impl: str):
    """The conv callable for `flax.linen.Conv(conv_general_dilated=...)`."""
    return taps_conv_general_dilated if resolve_conv_impl(conv_impl) == "taps" else lax.conv_general_dilated


def _mean_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2), dtype=jnp.float32)


def _matmul_pool(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    summed = jnp.einsum("npc,p->nc", x.reshape(n, h * w, c), jnp.ones((h * w,), x.dtype),
                        preferred_element_type=jnp.float32)
    return summed / (h * w)


def pool_function(conv_impl: str) -> Callable[[jax.Array], jax.Array]:
    """Global average pooling for `conv_impl`: NHWC -> (N, C) float32, accumulated in float32
    (a matmul with a ones vector under "taps", see above; a mean otherwise)."""
    return _matmul_pool if resolve_conv_impl(conv_impl) == "taps" else _mean_pool


def global_average_pool(x: jax.Array, conv_impl: str) -> jax.Array:
    """Mean over H and W of an NHWC tensor, accumulated in float32: (N, C) float32."""
    return pool_function(conv_impl)(x)
