"""What crosses the project's boundary: Flax variables <-> PyTorch state_dicts in three layouts
(`state_dict`, re-exported here), the standalone torch module (`torch_model`, needs torch), .pth
files and ONNX. The model checkpoints every tool reads and writes are `genet_jax.checkpoint`."""
from genet_jax.interop.state_dict import (LAYOUTS, StateDictError, convert_state_dict, detect_layout, from_state_dict,
                                          head_name, state_dict_keys, timm_config, timm_model_name, to_state_dict)

__all__ = ["LAYOUTS", "StateDictError", "convert_state_dict", "detect_layout", "from_state_dict", "head_name", "state_dict_keys", "timm_config", "timm_model_name", "to_state_dict"]
