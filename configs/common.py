"""Fields shared by every training config; each config file starts from `base_config()`."""
import ml_collections

from genet_jax.data.images import DEFAULT_MAX_IMAGE_PIXELS


def base_config() -> ml_collections.ConfigDict:
    """Every training field with its default and a comment: one table, read top to bottom (so it is
    longer than a function should be)."""
    c = ml_collections.ConfigDict()
    c.workdir = "workdirs/default"
    c.model = "genet_light"          # registered name, spec .json / structure-string .txt path, or inline JSON
    c.dtype = "float32"              # compute dtype: float32 | bfloat16 | float16 (params stay float32)
    c.zero_init_last_bn = True
    c.seed = 0
    c.batch_size = 256               # global, over all devices and hosts
    c.num_epochs = 90.0
    c.num_train_steps = -1           # > 0 overrides num_epochs
    c.resolution = -1                # -1: the model spec's resolution
    c.bn_statistics = "per_device"   # training BN statistics: per_device (as PyTorch DDP; the paper) | global (synced)
    c.conv_impl = "auto"             # auto | lax | taps: conv kernels (genet_jax.models.conv_ops), speed only

    c.data = ml_collections.ConfigDict()
    c.data.source = "digits"         # digits | folder:DIR | tfds:NAME
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.data_dir = ""             # TFDS data_dir (default ~/tensorflow_datasets)
    c.data.num_threads = 4           # decoding/augmentation threads per host (per worker with worker_count > 0)
    c.data.worker_count = 0          # > 0: decode/augment in this many grain worker processes per host
    c.data.eval_crop_fraction = 0.875
    c.data.eval_batch_size = 256
    c.data.cache_decoded = False     # decode every image once into memory (small data sets)
    c.data.holdout_size = 0          # > 0: hold out this many (seeded) training examples; eval_split 'holdout'
    c.data.holdout_seed = 0
    # Image files whose header claims more pixels are skipped unread (a hostile file cannot exhaust memory).
    # Pillow's own limit (PIL.Image.MAX_IMAGE_PIXELS), also the most allowed: above it Pillow warns, above twice
    # it Pillow refuses, and genet_jax leaves that process-wide setting to the program.
    c.data.max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS

    c.augment = ml_collections.ConfigDict()
    c.augment.random_resized_crop = True
    c.augment.rrc_scale = (0.08, 1.0)
    c.augment.crop_padding = 0       # without random_resized_crop: reflect-pad and random-crop
    c.augment.hflip = True
    c.augment.policy = "none"        # none | autoaugment | randaugment
    c.augment.randaugment_num_ops = 2
    c.augment.randaugment_magnitude = 9
    c.augment.random_erase_prob = 0.0
    c.augment.mixup_alpha = 0.0
    c.augment.cutmix_alpha = 0.0
    c.augment.label_smoothing = 0.0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr_per_256 = 0.1
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 4e-5      # not applied to BN parameters or biases
    c.optim.warmup_epochs = 5.0
    c.optim.grad_clip_norm = 0.0     # 0: off
    c.optim.fp16_initial_loss_scale = 32768.0  # dtype float16 only: dynamic loss scaling
    c.optim.fp16_scale_growth_steps = 2000     # finite steps before the scale doubles
    c.optim.accumulate_steps = 1     # > 1: each step's global batch in this many sequential micro-batches
    c.optim.ema_decay = 0.0          # > 0: keep an exponential moving average of the weights (and BN statistics)
    c.optim.ema_warmup_power = 0.75  # > 0: decay warm-up min(ema_decay, 1 - (1 + update)^-power); 0: none

    c.teacher = ml_collections.ConfigDict()
    c.teacher.checkpoint = ""        # a checkpoint of this project (any spec, or imported from PyTorch)
    c.teacher.true_label_weight = 1.0
    c.teacher.soft_label_weight = 1.0
    c.teacher.temperature = 1.0

    c.init_from = ml_collections.ConfigDict()
    c.init_from.checkpoint = ""      # fine-tune from this checkpoint; the head is re-initialised on a class change
    c.init_from.pretrained = ""      # or from published weights (genet_normal, ...), a weights file/folder or Hub id

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 1000
    c.checkpoint.keep = 3            # the last N, plus the best by eval top-1
    c.checkpoint.async_save = True

    c.log_every_steps = 50
    c.eval_every_epochs = 1.0        # epochs between evaluations; 0: once, at the end of the run
    c.eval_flip_tta = False          # average the logits of each eval image and its mirror image
    c.progress_bar = True
    return c
