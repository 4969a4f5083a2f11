"""The published ImageNet weights of the three GENets: where they live, what they were published with,
and the evaluation preprocessing they expect.

Sources (the same weights; timm converted the authors' files, Apache-2.0):
- the Hugging Face Hub, timm's `timm/gernet_{s,m,l}.idstcv_in1k` repositories, `model.safetensors` in
  timm's layout (genet_jax.interop.state_dict "timm");
- the authors' `.pth` files (their README's links; the "official" layout), read with the torch extra.

Neither a file hash nor a commit id of these is pinned here: none could be checked from this project's
machines (no route to the Hub), and a written-down hash nobody verified protects nothing. Every download
is still checked against the hash the Hub itself publishes for it (its ETag; genet_jax.pretrained.hub).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from genet_jax.data.images import (EVAL_CROP_FRACTION, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, eval_resize_crop,
                                   load_rgb, normalize)
from genet_jax.errors import InputError

CLASS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet1k_classes.tsv")
HUB_WEIGHTS_FILE = "model.safetensors"
AUTHORS_URL = "https://idstcv.oss-cn-zhangjiakou.aliyuncs.com/GENet/{file}"


class UnknownWeightsError(InputError, KeyError):
    """A name with no published weights; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class EvalPreprocessing:
    """What a network's weights expect at evaluation: resize the shorter side to
    ceil(resolution / crop_fraction) (bilinear), centre-crop resolution x resolution, scale to [0, 1] and
    normalise with mean/std. Calling it turns a PIL image or an image file into float32 HWC."""

    resolution: int
    crop_fraction: float = EVAL_CROP_FRACTION
    mean: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std: tuple[float, float, float] = IMAGENET_STD_RGB
    interpolation: str = "bilinear"

    def __call__(self, image: Any) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            image = load_rgb(image)
        return normalize(eval_resize_crop(image.convert("RGB"), self.resolution, self.crop_fraction), self.mean, self.std)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EvalPreprocessing":
        return cls(int(data["resolution"]), float(data["crop_fraction"]), tuple(data["mean"]), tuple(data["std"]),
                   str(data.get("interpolation", "bilinear")))


@dataclasses.dataclass(frozen=True)
class PublishedTop1:
    """An ImageNet-1k validation top-1 (%) as its publisher reports it, with the evaluation it used."""

    top1: float
    resolution: int
    crop_fraction: float
    publisher: str


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    name: str                      # the registered architecture (genet_jax.arch.registry)
    hub_repo: str                  # Hugging Face Hub model repository holding HUB_WEIGHTS_FILE
    authors_file: str              # the authors' .pth file name (AUTHORS_URL)
    preprocessing: EvalPreprocessing  # the authors' evaluation (resolution, crop); timm's is in `published`
    published: tuple[PublishedTop1, ...]
    license: str = "apache-2.0"
    hub_revision: str = "main"     # a branch until a commit id can be verified
    hub_sha256: Optional[str] = None  # pinned only where verified; the Hub's ETag is checked regardless

    @property
    def authors_url(self) -> str:
        return AUTHORS_URL.format(file=self.authors_file)


def _weights(name: str, timm_name: str, authors_file: str, resolution: int, authors_top1: float,
             timm_top1: float, timm_resolution: int) -> PretrainedWeights:
    return PretrainedWeights(
        name, f"timm/{timm_name}.idstcv_in1k", authors_file, EvalPreprocessing(resolution),
        (PublishedTop1(authors_top1, resolution, EVAL_CROP_FRACTION, "authors (paper, Table 2)"),
         PublishedTop1(timm_top1, timm_resolution, EVAL_CROP_FRACTION, "timm (results-imagenet.csv)")))


# Published top-1: the paper's Table 2 at the authors' resolution; timm's own evaluation of the same
# weights at its default resolution.
PRETRAINED = {w.name: w for w in (
    _weights("genet_light", "gernet_s", "GENet_small.pth", 192, 75.7, 76.87, 224),
    _weights("genet_normal", "gernet_m", "GENet_normal.pth", 192, 80.0, 80.70, 224),
    _weights("genet_large", "gernet_l", "GENet_large.pth", 256, 81.3, 81.35, 256),
)}
ALIASES = {"genet_small": "genet_light", "gernet_s": "genet_light", "gernet_m": "genet_normal",
           "gernet_l": "genet_large"}


def known_names() -> list[str]:
    return sorted(PRETRAINED) + sorted(ALIASES)


def pretrained_weights(name: str) -> PretrainedWeights:
    """The published weights of `name` (or an alias), or UnknownWeightsError listing the known names."""
    key = ALIASES.get(name, name)
    if key in PRETRAINED:
        return PRETRAINED[key]
    close = difflib.get_close_matches(name, known_names(), n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UnknownWeightsError(f"no pretrained weights for {name!r}{hint}; published: {', '.join(known_names())}; "
                              "or pass pretrained='path/to/model.safetensors' (or a folder, a .pth, a Hub repo id)")


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """((WordNet synset id, lemmas), ...) of the 1000 ImageNet-1k classes in label order."""
    with open(CLASS_FILE, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]
    return tuple((synset, lemmas) for synset, lemmas in rows)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in label order, each its synset's first lemma ("tench", "goldfish")."""
    return [lemmas.split(",")[0] for _, lemmas in imagenet_classes()]
