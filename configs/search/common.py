"""Fields shared by every LLR-NAS config; each search config starts from `search_config(train)`."""
import ml_collections
from ml_collections import config_dict


def search_config(train: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`train`: the trainer config of the MasterNet (model, data with a held-out NAS validation
    split, recipe); fine-tunes and the picks' training reuse it with the fields below."""
    c = ml_collections.ConfigDict()
    c.workdir = "workdirs/search"
    c.seed = 0
    c.train = train
    c.master_checkpoint = ""          # use this MasterNet (a checkpoint of this project) instead of training one

    c.space = ml_collections.ConfigDict()     # paper section 5
    c.space.kernels = (3, 5)
    c.space.bl_ratios = (0.25, 0.5)
    c.space.dw_ratios = (3.0, 6.0, 9.0)
    c.space.width_range = (0.5, 2.0)          # x the super-block's width
    c.space.depth_delta = 2                   # depth in [d - 2, d + 2], >= 1
    c.space.width_multiple = 8
    c.perturbations_per_block = 9

    c.finetune = ml_collections.ConfigDict()
    c.finetune.epochs = 30.0
    c.finetune.num_train_steps = -1           # > 0 overrides epochs
    c.finetune.lr_per_256 = 0.01
    c.finetune.warmup_epochs = 0.0
    c.finetune.keep_checkpoints = False       # delete each fine-tune's checkpoints once its result is stored

    c.regression = ml_collections.ConfigDict()
    c.regression.ridge = 1.0                  # penalty on per-type slope deviations (accuracy units)

    c.latency = ml_collections.ConfigDict()   # the probe: genet_jax.latency protocol
    c.latency.batch = 64
    c.latency.dtype = "float16"
    c.latency.conv_impl = "auto"              # resolved for the probing device (recorded in the results)
    # where the budget is measured: "jax" (XLA), or "onnxruntime" (the network exported to ONNX as
    # deployed, on `provider`: CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider)
    c.latency.engine = "jax"
    c.latency.provider = "CPUExecutionProvider"
    c.latency.runs = 30
    c.latency.trim = 0.1
    # unset: the platform's protocol (genet_jax.latency.timing): 1 round, 10 runs + 0.2 s warm-up on GPU/TPU;
    # 3 rounds (fastest kept: the host has slow spells), 5 warm-up runs on CPU
    c.latency.warmup = config_dict.placeholder(int)
    c.latency.rounds = config_dict.placeholder(int)
    c.latency.grid_points = 4                 # (input, output) widths per super-block for first units
    c.latency.line_points = 16                # widths of the 1-D parts (repeated units, tail); <= 0: all allowed
    c.latency.calibration_probes = 8          # full-network probes fitting the table's calibration
    c.latency.validation_probes = 12          # other random structures checking the table (reported error)

    c.selection = ml_collections.ConfigDict()
    c.selection.budget_ms = 0.20              # ms/image; <= 0: budget_master_fraction x the MasterNet's latency
    c.selection.budget_master_fraction = 1.0
    c.selection.num_candidates = 100_000
    c.selection.top_k = 5                     # measured with the full-network probe per round
    c.selection.table_slack = 0.1             # also probe candidates the table puts up to 10% over budget
    c.selection.resolutions = (224,)

    c.final = ml_collections.ConfigDict()     # training of each resolution's pick (0 epochs: skip)
    c.final.epochs = 120.0
    c.final.num_train_steps = -1
    return c
