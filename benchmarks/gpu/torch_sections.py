"""The report's PyTorch sections, each run in a process of its own (JAX never initialises a device
here): this project's torch GENet in eager mode and under torch.compile, timm's peers of the paper's
Table 7, and a training step with AMP, channels_last and SGD Nesterov. cuDNN autotuning
(`cudnn.benchmark`) picks its kernels during the warm-up calls of each new input shape."""
from __future__ import annotations

import time

import numpy as np
import torch

import genet_jax as g
from benchmarks.gpu.plan import Budget, Plan, label
from genet_jax.data.images import normalization_constants
from genet_jax.interop.torch_model import TorchGENet
from genet_jax.latency.timing import PAPER_TRIM, platform_protocol, time_runs, trimmed_mean

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
TRAIN_SEED = 0


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(_result=None) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def torch_seconds(fn, runs: int, warmup: int) -> float:
    """genet_jax.latency.timing's protocol (warm-up calls + the platform's warm-up seconds, `runs` timed
    calls each ended by a device synchronisation, 10% trimmed at each end), for torch."""
    warmup_seconds = platform_protocol("gpu" if torch.cuda.is_available() else "cpu").warmup_seconds
    return trimmed_mean(time_runs(fn, runs, warmup, warmup_seconds=warmup_seconds, sync=synchronize), PAPER_TRIM)


def images(batch: int, resolution: int) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution), np.float32))
    return x.to(device()).contiguous(memory_format=torch.channels_last)


def genet_module(arch: str, resolution: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = TorchGENet(g.resolve_spec(arch, resolution=resolution)).eval().fold_bn()
    return model.to(device(), memory_format=torch.channels_last)


def inference_rows(models, plan: Plan, budget: Budget, framework: str, variant: str, wrap=lambda m: m):
    """Rows of ms/image for each (dtype, model, batch); `models` maps name -> (resolution, builder)."""
    torch.backends.cudnn.benchmark = True
    for dtype in plan.dtypes:
        for name, (resolution, build) in models.items():
            model = None
            for batch in plan.batches:
                if not budget.allows(f"{name} {dtype} batch {batch}"):
                    continue
                if model is None:
                    model = wrap(build())
                x = images(batch, resolution)

                def forward():
                    with torch.inference_mode(), torch.autocast(device().type, dtype=DTYPES[dtype]):
                        return model(x)

                started = time.perf_counter()
                forward()
                synchronize()
                first_call = time.perf_counter() - started  # includes compilation under torch.compile
                seconds = torch_seconds(forward, plan.runs, plan.warmup)
                yield {"model": name, "framework": framework, "variant": variant, "dtype": dtype, "batch": batch,
                       "resolution": resolution, "ms_per_image": seconds * 1e3 / batch, "batch_ms": seconds * 1e3,
                       "first_call_seconds": first_call}


def torch_inference(plan: Plan, emit, budget: Budget) -> None:
    models = {label(arch): (res, lambda a=arch, r=res: genet_module(a, r)) for arch, res in plan.genets.items()}
    for row in inference_rows(models, plan, budget, "torch", "eager, channels_last, autocast, BN folded"):
        emit(row)


def torch_compile(plan: Plan, emit, budget: Budget) -> None:
    models = {label(arch): (res, lambda a=arch, r=res: genet_module(a, r)) for arch, res in plan.genets.items()}
    variant = f"torch.compile ({plan.compile_backend}), channels_last, autocast, BN folded"
    for row in inference_rows(models, plan, budget, "torch", variant,
                              wrap=lambda m: torch.compile(m, backend=plan.compile_backend)):
        emit(row)


def peers(plan: Plan, emit, budget: Budget) -> None:
    try:
        import timm  # optional: the peers are measured where timm is installed
    except ImportError as e:
        emit({"note": f"timm is not importable ({e}): the paper's peers are not measured"})
        return

    def build(name):
        return timm.create_model(name, pretrained=False).eval().to(device(), memory_format=torch.channels_last)

    models = {name: (res, lambda n=name: build(n)) for name, res in plan.peers.items()}
    for row in inference_rows(models, plan, budget, f"timm {timm.__version__}", "eager, channels_last, autocast"):
        emit(row)


def torch_training(plan: Plan, emit, budget: Budget) -> None:
    """One SGD Nesterov step of the torch GENet (AMP in the plan's dtype, channels_last, label
    smoothing 0.1, weight decay on kernels only, normalisation on the device) at the plan's start
    batch (the driver sets it to the batch the JAX section chose), halved until it fits."""
    torch.backends.cudnn.benchmark = True
    spec = g.resolve_spec(plan.train_arch, resolution=plan.train_resolution)
    batch = plan.train_batch_start
    while True:
        try:
            row = time_training_step(plan, spec, batch)
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch <= 1:
                raise
            batch //= 2
    emit({"model": label(plan.train_arch), "framework": "torch",
          "variant": "eager, AMP, channels_last, SGD Nesterov", "dtype": plan.train_dtype,
          "resolution": spec.resolution, **row})


def time_training_step(plan: Plan, spec, batch: int) -> dict:
    torch.manual_seed(TRAIN_SEED)
    model = TorchGENet(spec).train().to(device(), memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    lr = 0.1 * batch / 256
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 4e-5}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(TRAIN_SEED)
    pixels = torch.from_numpy(rng.integers(0, 256, (batch, 3, spec.resolution, spec.resolution), dtype=np.uint8))
    pixels = pixels.to(device()).contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(rng.integers(0, spec.num_classes, batch)).to(device())
    offset, scale = (torch.tensor(c, device=device()).view(1, 3, 1, 1) for c in normalization_constants())

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device().type, dtype=DTYPES[plan.train_dtype]):
            loss = torch.nn.functional.cross_entropy(model((pixels.float() - offset) * scale), labels,
                                                     label_smoothing=0.1)
        loss.backward()
        opt.step()
        return loss

    seconds = torch_seconds(step, plan.train_runs, plan.train_warmup)
    return {"batch": batch, "step_ms": seconds * 1e3, "images_per_second": batch / seconds}


def environment() -> dict:
    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "torch_device": str(device())}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(torch_device_name=props.name, torch_device_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    multiprocessors=props.multi_processor_count)
    return info


SECTIONS = {"torch_inference": torch_inference, "peers": peers, "torch_training": torch_training,
            "torch_compile": torch_compile}
