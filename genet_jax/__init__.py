"""genet-jax: GPU-Efficient Networks (GENet) in JAX/Flax."""
from genet_jax.versions import require as _require_supported

_require_supported("jax", "jaxlib", "flax")

from genet_jax.arch.counting import count_spec, spec_macs, spec_params  # noqa: E402
from genet_jax.arch.registry import get_entry, list_models, register_model, resolve_spec  # noqa: E402
from genet_jax.arch.spec import BLOCK_TYPES, NetworkSpec, SpecError, SuperBlockSpec, UnitConfig  # noqa: E402
from genet_jax.arch.structure_string import parse_structure_string, to_structure_string  # noqa: E402
from genet_jax.models.folding import fold_batch_norm  # noqa: E402
from genet_jax.models.module_counts import module_counts  # noqa: E402
from genet_jax.models.network import MasterNet, canonical_dtype, create_model, init_variables  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BLOCK_TYPES", "MasterNet", "NetworkSpec", "SpecError", "SuperBlockSpec", "UnitConfig",
    "canonical_dtype", "count_spec", "create_model", "fold_batch_norm", "get_entry", "init_variables",
    "list_models", "module_counts", "parse_structure_string", "register_model", "resolve_spec",
    "spec_macs", "spec_params", "to_structure_string",
]
