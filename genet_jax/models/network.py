"""MasterNet: one generic builder that turns any NetworkSpec into a Flax module."""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from genet_jax.arch.paths import FINAL, HEAD, STEM, stage_name
from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec, SpecError
from genet_jax.models.conv_ops import resolve_conv_impl
from genet_jax.models.layers import Dtype, SuperBlock, build_layers
from genet_jax.versions import warn_if_unsupported

_DTYPES = {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16,
           "float16": jnp.float16, "fp16": jnp.float16}


def canonical_dtype(dtype: Union[str, Any]) -> Any:
    """jnp.float32 / bfloat16 / float16 from a name or a dtype; anything else is an error."""
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPES:
            raise SpecError("dtype", f"unsupported compute dtype {dtype!r}; use float32, bfloat16 or float16")
        return _DTYPES[dtype.lower()]
    for candidate in (jnp.float32, jnp.bfloat16, jnp.float16):
        if jnp.dtype(dtype) == jnp.dtype(candidate):
            return candidate
    raise SpecError("dtype", f"unsupported compute dtype {dtype!r}; use float32, bfloat16 or float16")


class MasterNet(nn.Module):
    """stem -> super-blocks -> final 1x1 conv -> global average pool -> linear head.

    Parameter tree: stem/, stage{i}/unit{j}/{conv1,conv2,conv3,shortcut}/{conv,bn}, final/, head/.
    Input: NHWC images. Output: float32 logits.
    """

    spec: NetworkSpec
    dtype: Dtype = jnp.float32
    zero_init_last_bn: bool = False
    fold_bn: bool = False
    conv_impl: str = "auto"  # see genet_jax.models.conv_ops; "auto" is resolved when the module is built
    bn_axis_name: Optional[str] = None  # training under shard_map: BN statistics over this axis (see build_layers)

    def __post_init__(self):
        object.__setattr__(self, "conv_impl", resolve_conv_impl(self.conv_impl))  # frozen dataclass field
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.spec
        layers = build_layers(self.dtype, self.conv_impl, fold_bn=self.fold_bn,
                              zero_init_last_bn=self.zero_init_last_bn, train=train,
                              bn_axis_name=self.bn_axis_name)
        x = jnp.asarray(x, self.dtype)
        x = layers.conv_bn(spec.stem_width, spec.stem_kernel_size, spec.stem_stride, name=STEM)(x)
        for i in range(len(spec.blocks)):
            x = SuperBlock(tuple(spec.units(i)), residual_unit=layers.residual_unit, name=stage_name(i))(x)
        x = layers.conv_bn(spec.final_width, 1, name=FINAL)(x)
        x = layers.pool(x)
        x = nn.Dense(spec.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                     kernel_init=nn.initializers.normal(0.01), name=HEAD)(x.astype(self.dtype))
        return x.astype(jnp.float32)

    def input_shape(self, batch_size: int = 1, resolution: Optional[int] = None) -> tuple[int, ...]:
        r = resolution or self.spec.resolution
        return (batch_size, r, r, self.spec.in_channels)


def create_model(name_or_spec: Union[str, os.PathLike, NetworkSpec], *, num_classes: Optional[int] = None,
                 resolution: Optional[int] = None, dtype: Union[str, Any] = "float32",
                 zero_init_last_bn: bool = False, fold_bn: bool = False, conv_impl: str = "auto",
                 pretrained: Union[bool, str, os.PathLike] = False, **pretrained_options: Any):
    """Build a GENet/MasterNet from a registered name, a spec JSON or structure-string file, or a spec.

    `num_classes` / `resolution` override the spec's. `dtype` is the compute dtype (parameters and BN
    statistics stay float32). `fold_bn=True` gives the inference variant that runs the parameters
    produced by `genet_jax.fold_batch_norm`. `conv_impl` picks the convolution kernels
    (genet_jax.models.conv_ops: "auto", "lax" or "taps"); it changes speed, never the parameters. "auto"
    is resolved here, for JAX's default backend: `model.conv_impl` names the kernels that run.

    Returns the module; with `pretrained` (True: the name's published ImageNet weights; or a weights
    file, folder or Hub repo id) a `genet_jax.Pretrained` instead, which unpacks as `model, variables`
    and carries the evaluation preprocessing and class names (`genet_jax.load_pretrained`, whose keyword
    arguments `pretrained_options` are: source, revision, cache_dir, seed).
    """
    if pretrained:
        from genet_jax.pretrained.loading import load_pretrained  # imports this module
        return load_pretrained(name_or_spec, pretrained=pretrained, num_classes=num_classes, resolution=resolution,
                               dtype=dtype, fold_bn=fold_bn, conv_impl=conv_impl, **pretrained_options)
    if pretrained_options:
        raise TypeError(f"create_model: {sorted(pretrained_options)} apply with pretrained= only")
    warn_if_unsupported()
    spec = resolve_spec(name_or_spec, num_classes=num_classes, resolution=resolution)
    return MasterNet(spec, canonical_dtype(dtype), zero_init_last_bn, fold_bn, conv_impl)


def init_variables(model: MasterNet, rng: Union[int, jax.Array] = 0, batch_size: int = 1,
                   resolution: Optional[int] = None) -> dict:
    """Initialise {'params', 'batch_stats'} (only 'params' for a folded model), jitted."""
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    x = jnp.zeros(model.input_shape(batch_size, resolution), jnp.float32)
    return jax.jit(lambda r, x: model.init(r, x, train=False))(rng, x)
