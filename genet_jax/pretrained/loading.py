"""`load_pretrained`: a GENet with published (or your own) weights, its evaluation preprocessing and its
class names, in one call; `genet_jax.create_model(name, pretrained=...)` is the same call.

Where the weights come from (`pretrained=`):
- True: the name's published weights (genet_jax.pretrained.catalog) from `source`: "hub" (default; the
  Hugging Face Hub, safetensors, no torch) or "pth" (the authors' .pth files; the torch extra);
- a local `.safetensors` / `.pth` file, or a folder holding `model.safetensors` (+ `config.json`), as
  `save_pretrained` writes and timm publishes;
- a Hub repository id (`owner/name` or `hf-hub:owner/name`) of such a folder;
- a published name ("genet_normal"), as True with that name.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Iterator, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax.arch.paths import HEAD
from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec
from genet_jax.errors import InputError
from genet_jax.models.folding import fold_batch_norm
from genet_jax.models.network import MasterNet, create_model, init_variables
from genet_jax.pretrained import files, hub
from genet_jax.pretrained.catalog import (HUB_WEIGHTS_FILE, EvalPreprocessing, PretrainedWeights, PublishedTop1,
                                          imagenet_class_names, pretrained_weights)
from genet_jax.pretrained.sources import fetch_published


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A model with its weights: unpacks as `model, variables = ...`; `preprocessing(image)` makes its input."""

    model: MasterNet
    variables: dict
    preprocessing: EvalPreprocessing
    class_names: Optional[tuple[str, ...]]
    source: str                     # where the weights came from (file path, or Hub repo@revision)
    sha256: Optional[str] = None    # of the weights file, where it was hashed (every Hub download is)
    published: tuple[PublishedTop1, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.variables

    @functools.cached_property
    def _probabilities(self):
        """The forward pass and softmax, compiled once per model (cached_property bypasses the frozen setattr)."""
        return jax.jit(lambda variables, x: jax.nn.softmax(self.model.apply(variables, x), axis=-1))

    def top_k(self, image: Any, k: int = 5) -> list[tuple[str, float]]:
        """[(class name, probability)] of the k likeliest classes of one image (a path or a PIL image)."""
        pixels = jnp.asarray(self.preprocessing(image))[None]
        probabilities = np.asarray(self._probabilities(self.variables, pixels))[0]
        order = np.argsort(-probabilities, kind="stable")[:k]
        names = self.class_names or tuple(str(i) for i in range(len(probabilities)))
        return [(names[i], float(probabilities[i])) for i in order]


@dataclasses.dataclass(frozen=True)
class _Weights:
    """Weights located and read, before they meet a model."""

    state_dict: dict
    where: str
    spec: Optional[NetworkSpec] = None
    preprocessing: Optional[EvalPreprocessing] = None
    class_names: Optional[list[str]] = None
    sha256: Optional[str] = None
    published: tuple[PublishedTop1, ...] = ()


def _from_folder(directory: str, weights_file: str, sha256: Optional[str] = None, where: str = "") -> _Weights:
    spec, preprocessing, class_names, _ = files.read_folder_config(directory)
    state_dict = files.read_state_dict(weights_file)
    return _Weights(state_dict, where or weights_file, spec, preprocessing, class_names, sha256)


def _from_path(path: str) -> _Weights:
    if os.path.isdir(path):
        weights_file = os.path.join(path, HUB_WEIGHTS_FILE)
        if not os.path.isfile(weights_file):
            raise InputError(f"{path}: a weights folder needs {HUB_WEIGHTS_FILE} (save_pretrained writes one)")
        return _from_folder(path, weights_file)
    return _Weights(files.read_state_dict(path), path, sha256=hub.file_sha256(path))


def _from_hub_repo(repo: str, revision: Optional[str], cache_dir: Optional[str]) -> _Weights:
    weights_file, sha256 = hub.hub_download(repo, HUB_WEIGHTS_FILE, revision, cache_dir)
    try:
        hub.hub_download(repo, files.CONFIG_FILE, revision, cache_dir)  # lands beside the weights
    except hub.HubUnavailableError:
        pass  # a repository without config.json: the architecture must come from the name
    where = f"{hub.strip_hub_prefix(repo)}@{revision or 'main'} ({HUB_WEIGHTS_FILE})"
    return _from_folder(os.path.dirname(weights_file), weights_file, sha256, where)


def _from_catalog(entry: PretrainedWeights, source: str, revision: Optional[str], cache_dir: Optional[str]) -> _Weights:
    path, sha256, where = fetch_published(entry, source, revision, cache_dir)
    class_names = imagenet_class_names()
    return _Weights(files.read_state_dict(path), where, resolve_spec(entry.name), entry.preprocessing, class_names,
                    sha256, entry.published)


def locate_weights(name: Optional[str], pretrained: Union[bool, str], source: str, revision: Optional[str],
                   cache_dir: Optional[str]) -> _Weights:
    if pretrained is True:
        if name is None:
            raise InputError("pretrained=True needs a model name (genet_light, genet_normal, genet_large)")
        return _from_catalog(pretrained_weights(name), source, revision, cache_dir)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise InputError(f"pretrained must be True, a path or a Hub repo id, got {pretrained!r}")
    text = os.fspath(pretrained)
    if os.path.exists(text):
        return _from_path(text)
    if text.endswith((".safetensors",) + files.PTH_SUFFIXES):  # "dir/model.safetensors" is no Hub repo id
        raise InputError(f"pretrained={text!r}: no such file")
    if hub.is_hub_id(text):
        return _from_hub_repo(text, revision, cache_dir)
    if os.sep in text or "." in os.path.basename(text):
        raise InputError(f"pretrained={text!r}: no such file or folder")
    return _from_catalog(pretrained_weights(text), source, revision, cache_dir)  # a published name, or the list


def _architecture(name_or_spec: Union[str, NetworkSpec, None], weights: _Weights) -> NetworkSpec:
    """The spec the weights are for: the caller's name or spec, else the folder's config, else the
    registered network the tensors fit."""
    layout = files.detect_layout_or_error(weights.state_dict, weights.where)
    if name_or_spec is not None:
        return resolve_spec(name_or_spec, num_classes=files.head_classes(weights.state_dict, layout))
    if weights.spec is not None:
        return weights.spec
    from genet_jax.interop.pth_files import registered_match
    match = registered_match(weights.state_dict, layout)
    if match is None:
        raise files.WeightsMismatchError(f"{weights.where}: fits no registered architecture; pass its name or spec")
    return match[1]


def _new_head(model: MasterNet, variables: dict, seed: int) -> dict:
    fresh = init_variables(model, seed)
    return {"params": {**variables["params"], HEAD: fresh["params"][HEAD]}, "batch_stats": variables["batch_stats"]}


def _is_weights_path(name_or_spec: Any) -> bool:
    """A weights folder or file given where a name is expected (a spec .json or .txt file is a name)."""
    if not isinstance(name_or_spec, (str, os.PathLike)):
        return False
    path = os.fspath(name_or_spec)
    return os.path.isdir(path) or (os.path.isfile(path) and path.endswith((".safetensors",) + files.PTH_SUFFIXES))


def load_pretrained(name_or_spec: Union[str, NetworkSpec, None] = None, *, pretrained: Union[bool, str] = True,
                    source: str = "hub", revision: Optional[str] = None, cache_dir: Optional[str] = None,
                    num_classes: Optional[int] = None, resolution: Optional[int] = None,
                    dtype: Union[str, Any] = "float32", fold_bn: bool = False, conv_impl: str = "auto",
                    seed: int = 0) -> Pretrained:
    """A model with pretrained weights (see the module docstring for `pretrained` and `source`).

    `num_classes` different from the weights' gives a freshly initialised head (seeded by `seed`) for
    fine-tuning. `resolution` changes the evaluation crop (the network is convolutional). `fold_bn`
    folds BN into the convolutions (inference only). `revision`: a Hub branch, tag or commit id.
    """
    if pretrained is True and (_is_weights_path(name_or_spec) or (
            isinstance(name_or_spec, str) and hub.is_hub_id(name_or_spec))):
        name_or_spec, pretrained = None, os.fspath(name_or_spec)  # load_pretrained("path/to/folder" or "owner/name")
    weights = locate_weights(name_or_spec if isinstance(name_or_spec, str) else None, pretrained, source, revision,
                             cache_dir)
    spec = _architecture(name_or_spec, weights)
    variables, extras = files.variables_from_state_dict(spec, weights.state_dict, weights.where)
    del extras  # num_batches_tracked: PyTorch training bookkeeping
    preprocessing = weights.preprocessing or EvalPreprocessing(spec.resolution)
    if resolution is not None:
        preprocessing = dataclasses.replace(preprocessing, resolution=resolution)
    class_names = tuple(weights.class_names) if weights.class_names else None
    if class_names is not None and len(class_names) != spec.num_classes:
        class_names = None
    if num_classes is not None and num_classes != spec.num_classes:
        spec, class_names = spec.replace(num_classes=num_classes), None
        variables = _new_head(create_model(spec), variables, seed)
    model = create_model(spec, resolution=resolution, dtype=dtype, fold_bn=fold_bn, conv_impl=conv_impl)
    variables = jax.tree_util.tree_map(jnp.asarray, fold_batch_norm(variables) if fold_bn else variables)
    return Pretrained(model, variables, preprocessing, class_names, weights.where, weights.sha256, weights.published)
