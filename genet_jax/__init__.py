"""genet-jax: GPU-Efficient Networks (GENet) in JAX/Flax."""
from genet_jax.arch.counting import count_spec, spec_macs, spec_params
from genet_jax.arch.registry import get_entry, list_models, register_model, resolve_spec
from genet_jax.arch.spec import BLOCK_TYPES, NetworkSpec, SpecError, SuperBlockSpec, UnitConfig
from genet_jax.arch.structure_string import parse_structure_string, to_structure_string
from genet_jax.models.folding import fold_batch_norm
from genet_jax.models.module_counts import module_counts
from genet_jax.models.network import MasterNet, canonical_dtype, create_model, init_variables
from genet_jax.pretrained import EvalPreprocessing, Pretrained, load_pretrained, save_pretrained

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

__all__ = [
    "BLOCK_TYPES", "MasterNet", "NetworkSpec", "SpecError", "SuperBlockSpec", "UnitConfig",
    "canonical_dtype", "count_spec", "create_model", "fold_batch_norm", "get_entry", "init_variables",
    "list_models", "module_counts", "parse_structure_string", "register_model", "resolve_spec",
    "spec_macs", "spec_params", "to_structure_string", "EvalPreprocessing", "Pretrained", "load_pretrained",
    "save_pretrained", "__version__",
]
