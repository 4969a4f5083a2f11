"""The paper's ImageNet recipe for GENet-light at 192x192
(section 5 of the paper and the authors' released training settings).

    python train.py --config configs/imagenet_genet_light.py --config.workdir=workdirs/genet_light
ImageNet comes from TFDS (imagenet2012, prepared from the manual download) or, with
--config.data.source=folder:/path/to/imagenet, from an extracted train/ and val/ tree.
"""
from configs.imagenet_recipe import imagenet_config


def get_config():
    return imagenet_config("genet_light", 192)
