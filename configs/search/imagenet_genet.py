"""LLR-NAS as in the paper (section 5 of the paper): MasterNet of Table 6, 9 perturbations per
super-block each fine-tuned 30 epochs at lr 0.01 per 256, 50,000 held-out training images as the
NAS validation set, budgets 0.10 / 0.20 / 0.34 ms/image at batch 64 in half precision (light /
normal / large), resolutions 192 / 224 / 256, each pick trained 120 epochs. On a GPU cluster:

    python search.py --config configs/search/imagenet_genet.py --stage master
    python search.py --config configs/search/imagenet_genet.py --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
    python search.py --config configs/search/imagenet_genet.py --stage select
`--config configs/search/imagenet_genet.py:light` (or :normal, :large) picks the budget.
"""
from configs.imagenet_recipe import imagenet_config
from configs.search.common import search_config

BUDGETS_MS = {"light": 0.10, "normal": 0.20, "large": 0.34}


def get_config(target: str = "normal"):
    if target not in BUDGETS_MS:
        raise ValueError(f"configs/search/imagenet_genet.py:{target}: the target must be one of {sorted(BUDGETS_MS)}")
    train = imagenet_config("masternet", 224)
    train.num_epochs = 120.0
    train.data.holdout_size = 50_000
    train.data.holdout_seed = 0
    c = search_config(train)
    c.workdir = f"workdirs/search_imagenet_{target}"
    c.target = target
    c.selection.budget_ms = BUDGETS_MS[target]
    c.selection.resolutions = (192, 224, 256)
    c.latency.dtype = "float16"
    c.latency.batch = 64
    return c
