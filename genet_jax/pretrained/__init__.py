"""Pretrained GENets without torch: the published ImageNet weights from the Hugging Face Hub (or the
authors' .pth files), local files and folders, and `save_pretrained` for the Hub's conventions."""
from genet_jax.pretrained.catalog import (PRETRAINED, EvalPreprocessing, PretrainedWeights, PublishedTop1,
                                          imagenet_class_names, pretrained_weights)
from genet_jax.pretrained.loading import Pretrained, load_pretrained
from genet_jax.pretrained.saving import model_card, save_pretrained

__all__ = ["PRETRAINED", "EvalPreprocessing", "Pretrained", "PretrainedWeights", "PublishedTop1",
           "imagenet_class_names", "load_pretrained", "model_card", "pretrained_weights", "save_pretrained"]
