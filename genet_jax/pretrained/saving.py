"""`save_pretrained`: a folder in the Hugging Face Hub's conventions, loadable by `load_pretrained(dir)`
and by timm (`timm.create_model("hf-hub:OWNER/NAME")` once published, for gernet_s/m/l shapes):

    model.safetensors   the weights in timm's state_dict layout
    config.json         timm's fields + this project's spec, preprocessing and run metadata
    README.md           a model card: architecture, parameters, multiply-adds, data, recipe, metrics

Publish with `huggingface_hub.upload_folder(repo_id="OWNER/NAME", folder_path=dir)` (after `hf auth login`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from genet_jax.arch.counting import spec_macs, spec_params
from genet_jax.arch.spec import NetworkSpec
from genet_jax.arch.structure_string import to_structure_string
from genet_jax.interop.state_dict import timm_model_name
from genet_jax.pretrained import files
from genet_jax.pretrained.catalog import EvalPreprocessing

CARD_TEMPLATE = """---
license: {license}
library_name: genet-jax
tags:
- image-classification
- jax
- flax
- genet
- timm
{datasets}---
# {title}

A GPU-Efficient Network (GENet; Lin et al., *Neural Architecture Design for GPU-Efficient Networks*,
arXiv:2006.14090) saved by genet-jax {version}.

## Model
- Architecture: {architecture}
- Parameters: {params:,}
- Multiply-adds: {macs_g:.3f} G at {resolution}x{resolution}
- Classes: {num_classes}
- Structure string (the authors' format): `{structure}`

## Evaluation preprocessing
Resize the shorter side to ceil({resolution} / {crop_fraction}) ({interpolation}), centre-crop
{resolution}x{resolution}, scale to [0, 1], normalise with mean {mean} and std {std}.

## Use
```python
import genet_jax
pretrained = genet_jax.load_pretrained(pretrained="{repo_hint}")   # or a local copy of this folder
model, variables = pretrained
print(pretrained.top_k("image.jpg"))
```
{timm_use}
## Data, recipe and metrics
{details}
"""


def _details(metadata: Mapping[str, Any]) -> str:
    if not metadata:
        return "Not recorded for these weights.\n"
    return "```json\n" + json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n```\n"


RUN_FILES = {"recipe": "config.json", "metrics": "metrics.json"}  # what a trainer writes beside checkpoints/


def run_metadata(checkpoint_step_dir: str, checkpoint_metadata: Mapping[str, Any], weights: str) -> dict:
    """What a model card reports of the run that trained a checkpoint: its data source, which weights
    (raw or EMA), and the trainer's config (the recipe) and final metrics where they sit in its workdir."""
    metadata: dict[str, Any] = {"weights": weights}
    if checkpoint_metadata.get("data_source"):
        metadata["dataset"] = checkpoint_metadata["data_source"]
    workdir = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_step_dir)))  # WORKDIR/checkpoints/STEP
    for key, name in RUN_FILES.items():
        path = os.path.join(workdir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                metadata[key] = json.load(f)
    return metadata


def model_card(spec: NetworkSpec, preprocessing: EvalPreprocessing, metadata: Optional[Mapping[str, Any]] = None,
               title: Optional[str] = None, repo_hint: str = "OWNER/NAME", license: str = "apache-2.0") -> str:
    from genet_jax import __version__
    metadata = dict(metadata or {})
    timm_name = timm_model_name(spec)
    dataset = metadata.get("dataset")
    timm_use = (f"\ntimm reads the same folder: `timm.create_model(\"hf-hub:{repo_hint}\", pretrained=True)` "
                f"({timm_name}).\n" if timm_name else "")
    return CARD_TEMPLATE.format(
        license=license, datasets=f"datasets:\n- {dataset}\n" if dataset else "", title=title or "GENet",
        version=__version__, architecture=timm_name or "a GENet-space network (spec in config.json)",
        params=spec_params(spec), macs_g=spec_macs(spec, preprocessing.resolution) / 1e9,
        resolution=preprocessing.resolution, num_classes=spec.num_classes, structure=to_structure_string(spec),
        crop_fraction=preprocessing.crop_fraction, interpolation=preprocessing.interpolation,
        mean=list(preprocessing.mean), std=list(preprocessing.std), repo_hint=repo_hint, timm_use=timm_use,
        details=_details(metadata))


def save_pretrained(directory: str, spec: NetworkSpec, variables: Mapping, *,
                    preprocessing: Optional[EvalPreprocessing] = None, class_names: Optional[list[str]] = None,
                    metadata: Optional[Mapping[str, Any]] = None, extras: Optional[dict] = None,
                    title: Optional[str] = None) -> list[str]:
    """Write model.safetensors, config.json and README.md into `directory`; returns their paths.
    `metadata` (dataset, recipe, metrics of the run) goes into config.json and the model card."""
    preprocessing = preprocessing or EvalPreprocessing(spec.resolution)
    config = files.folder_config(spec, preprocessing, class_names, dict(metadata or {}))
    card = model_card(spec, preprocessing, metadata, title)
    return files.write_folder(directory, spec, variables, config, card, extras)
