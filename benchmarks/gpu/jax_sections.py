"""The report's JAX sections, each run in a process of its own: logits on the device against the CPU,
a loss that decreases, inference latency by the library's probe, training throughput of the
project's own jitted train step, and data-parallel scaling over the visible devices."""
from __future__ import annotations

import math
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

import genet_jax as g
from benchmarks.gpu.plan import Budget, Plan, label
from genet_jax.latency import model_timing_variables, probe_latency
from genet_jax.latency.timing import time_runs, trimmed_mean
from genet_jax.models.conv_ops import resolve_conv_impl
from genet_jax.models.layers import BN_MOMENTUM
from genet_jax.training import optim, steps

# Logits of the same float32 weights on the device and on the CPU (highest matmul/conv precision on
# both: no TF32) may differ by summation order only; |diff| / max(1, max |logit|) must stay below this.
LOGITS_TOLERANCE = 1e-4
MEMORY_HEADROOM = 0.85  # of the device's memory a training batch may plan to use
NUM_CLASSES_LOSS_CHECK = 10
# GENet-light/normal at 64x64 on CPU: loss 2.5 -> 0.5 on one batch of 32 in 10 steps (at 0.4: 5.8 at step 4)
LOSS_CHECK_LR_PER_256 = 0.2


def recipe(dtype: str, lr_per_256: float = 0.1, bn_statistics: str = steps.BN_PER_DEVICE) -> types.SimpleNamespace:
    """The paper's optimiser for the trainer's step functions, without ml_collections (GPU images
    lack it); no mixup / erasing, so the step matches the PyTorch one it is compared with."""
    ns = types.SimpleNamespace
    return ns(dtype=dtype, bn_statistics=bn_statistics,
              augment=ns(label_smoothing=0.1, random_erase_prob=0.0, mixup_alpha=0.0, cutmix_alpha=0.0),
              optim=ns(lr_per_256=lr_per_256, warmup_epochs=0.0, weight_decay=4e-5, momentum=0.9, nesterov=True,
                       grad_clip_norm=0.0, fp16_initial_loss_scale=2.0 ** 15, fp16_scale_growth_steps=2000,
                       accumulate_steps=1, ema_decay=0.0, ema_warmup_power=0.0),
              teacher=ns(checkpoint=""))


def calibrated_variables(model, images) -> dict:
    """Variables whose BN running statistics are the batch statistics of `images`, so eval-mode
    activations stay O(1) through every unit and logit tolerances mean something."""
    variables = model_timing_variables(model, images.shape[1])
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, images)
    # one update from (mean 0, var 1): running = momentum * initial + (1 - momentum) * batch
    stats = jax.tree_util.tree_map_with_path(
        lambda path, v: (v - (BN_MOMENTUM if path[-1].key == "var" else 0.0)) / (1 - BN_MOMENTUM),
        updates["batch_stats"])
    return {"params": variables["params"], "batch_stats": stats}


def correctness(plan: Plan, emit, budget: Budget) -> None:
    device, cpu = jax.devices()[0], jax.devices("cpu")[0]
    spec = g.resolve_spec(plan.check_arch, resolution=plan.check_resolution)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((plan.check_batch, spec.resolution, spec.resolution, 3)).astype(np.float32)
    on_device = g.create_model(spec, conv_impl=resolve_conv_impl("auto", device.platform))
    reference_impl = resolve_conv_impl("auto", "cpu")  # on a CPU-only host: compare the two kernel sets
    on_cpu = g.create_model(spec, conv_impl="lax" if reference_impl == on_device.conv_impl else reference_impl)
    with jax.default_device(cpu):
        variables = jax.device_get(calibrated_variables(on_cpu, jnp.asarray(images)))
    for precision in ("highest", "default"):
        with jax.default_matmul_precision(precision):
            with jax.default_device(cpu):
                reference = np.asarray(jax.jit(on_cpu.apply)(jax.device_put(variables, cpu),
                                                             jax.device_put(images, cpu)))
            logits = np.asarray(jax.jit(on_device.apply)(jax.device_put(variables, device),
                                                         jax.device_put(images, device)))
        scale = max(1.0, float(np.abs(reference).max()))
        error = float(np.abs(logits - reference).max()) / scale
        emit({"check": f"logits float32, {precision} precision", "model": label(plan.check_arch),
              "device_conv_impl": on_device.conv_impl, "cpu_conv_impl": on_cpu.conv_impl,
              "max_abs_logit": scale, "relative_error": error,
              "tolerance": LOGITS_TOLERANCE if precision == "highest" else None,
              "passed": error <= LOGITS_TOLERANCE if precision == "highest" else None})
    emit(loss_decreases(plan, device))


def loss_decreases(plan: Plan, device) -> dict:
    """A few SGD steps of the trainer's step on one fixed batch (random images, random labels): a
    working forward, backward and update on the device memorise it, so the loss must go down."""
    spec = g.resolve_spec(plan.check_arch, resolution=plan.check_resolution, num_classes=NUM_CLASSES_LOSS_CHECK)
    config = recipe(plan.train_dtype, lr_per_256=LOSS_CHECK_LR_PER_256)
    model = g.create_model(spec, dtype=plan.train_dtype, zero_init_last_bn=True)
    schedule = optim.learning_rate_schedule(config.optim, plan.check_batch * 4, plan.loss_steps, 1)
    tx = optim.make_optimizer(config.optim, schedule)
    mesh = steps.create_mesh([device])
    step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, mesh=mesh), mesh)
    replicated, sharded = steps.shardings(mesh)
    state = jax.device_put(steps.init_state(model_timing_variables(model, spec.resolution), tx), replicated)
    rng = np.random.default_rng(1)
    batch = jax.device_put({"image": rng.integers(0, 256, (plan.check_batch * 4, spec.resolution, spec.resolution, 3),
                                                  dtype=np.uint8),
                            "label": rng.integers(0, NUM_CLASSES_LOSS_CHECK, plan.check_batch * 4).astype(np.int32)},
                           sharded)
    losses = []
    for _ in range(plan.loss_steps):
        state, metrics = step(state, batch, jax.random.PRNGKey(0), None)
        losses.append(float(metrics["loss"]))
    return {"check": f"training loss on one batch, {plan.loss_steps} steps", "model": label(plan.check_arch),
            "dtype": plan.train_dtype, "losses": losses, "passed": all(map(math.isfinite, losses))
            and losses[-1] < losses[0]}


def jax_inference(plan: Plan, emit, budget: Budget) -> None:
    """The library's probe (genet_jax.latency, the platform's protocol) on the BN-folded networks."""
    for dtype in plan.dtypes:
        for arch, resolution in plan.genets.items():
            variables = model_timing_variables(g.create_model(arch, resolution=resolution), resolution)
            for batch in plan.batches:
                if not budget.allows(f"{label(arch)} {dtype} batch {batch}"):
                    continue
                result = probe_latency(arch, batch, resolution, dtype, fold_bn=True, runs=plan.runs,
                                       warmup=plan.warmup, rounds=1, variables=variables)
                emit({"model": label(arch), "framework": "jax", "variant": "jit, BN folded", "dtype": dtype,
                      "batch": batch, "resolution": resolution, "ms_per_image": result.ms_per_image,
                      "batch_ms": result.batch_ms, "compile_seconds": result.compile_seconds,
                      "conv_impl": result.conv_impl, "warmup": result.warmup})


class TrainingBench:
    """The trainer's jitted, donated train step over `devices`, compiled once per batch size, timed
    on one device-resident batch (the input pipeline is not part of the figure).

    Longer than most classes because it holds the four steps that share one compiled step and its
    shardings: inputs, compile, time, and the search for the largest batch that fits."""

    def __init__(self, plan: Plan, devices, bn_statistics: str = steps.BN_PER_DEVICE):
        self.plan = plan
        self.spec = g.resolve_spec(plan.train_arch, resolution=plan.train_resolution)
        config = recipe(plan.train_dtype, bn_statistics=bn_statistics)
        model = g.create_model(self.spec, dtype=plan.train_dtype, zero_init_last_bn=True)
        schedule = optim.learning_rate_schedule(config.optim, 256, 10_000, 1000)
        tx = optim.make_optimizer(config.optim, schedule)
        self.mesh = steps.create_mesh(devices)
        self.replicated, self.sharded = steps.shardings(self.mesh)
        self.step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, mesh=self.mesh), self.mesh)
        variables = model_timing_variables(model, self.spec.resolution)
        self.host_state = jax.device_get(steps.init_state(variables, tx))
        self.compiled: dict[int, tuple] = {}

    def inputs(self, batch_size: int, abstract: bool = False) -> dict:
        shape = (batch_size, self.spec.resolution, self.spec.resolution, 3)
        if abstract:
            return {"image": jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=self.sharded),
                    "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=self.sharded)}
        rng = np.random.default_rng(0)
        return jax.device_put({"image": rng.integers(0, 256, shape, dtype=np.uint8),
                               "label": rng.integers(0, self.spec.num_classes, batch_size).astype(np.int32)},
                              self.sharded)

    def compile(self, batch_size: int):
        """(compiled step, bytes its memory plan needs or None, compile seconds)."""
        if batch_size not in self.compiled:
            state = jax.device_put(self.host_state, self.replicated)
            started = time.perf_counter()
            compiled = self.step.lower(state, self.inputs(batch_size, True), jax.random.PRNGKey(0), None).compile()
            self.compiled[batch_size] = (compiled, planned_bytes(compiled), time.perf_counter() - started)
        return self.compiled[batch_size]

    def time(self, batch_size: int) -> dict:
        compiled, planned, compile_seconds = self.compile(batch_size)
        batch, key = self.inputs(batch_size), jax.random.PRNGKey(0)
        state = [jax.device_put(self.host_state, self.replicated)]

        def one_step():
            state[0], metrics = compiled(state[0], batch, key, None)
            return metrics["loss"]

        seconds = trimmed_mean(time_runs(one_step, self.plan.train_runs, self.plan.train_warmup))
        return {"batch": batch_size, "step_ms": seconds * 1e3, "images_per_second": batch_size / seconds,
                "compile_seconds": compile_seconds, "planned_bytes": planned}

    def largest_batch(self, device, budget: Budget) -> tuple[int, str]:
        """The largest power of two (<= train_batch_max) whose memory plan fits the device with
        headroom: a line through the plans at the start batch and twice it, then checked by compiling
        the pick (halving while it does not fit; out of time, the largest checked). CPUs report no
        limit: the start batch."""
        limit = (device.memory_stats() or {}).get("bytes_limit")
        start = self.plan.train_batch_start
        if limit is None:
            return start, "the device reports no memory limit: the plan's start batch"
        base, double = self.compile(start)[1], self.compile(2 * start)[1]
        per_image = max(1.0, (double - base) / start)
        fixed = base - per_image * start
        batch = 2 ** int(math.floor(math.log2(max(1.0, (MEMORY_HEADROOM * limit - fixed) / per_image))))
        batch = max(start, min(self.plan.train_batch_max, batch))
        checked = 2 * start if double <= MEMORY_HEADROOM * limit else start
        how = "largest power of two"
        while batch > checked:
            if not budget.allows(f"checking the memory plan at batch {batch}"):
                batch, how = checked, "largest power of two checked in time"
                break
            if self.compile(batch)[1] <= MEMORY_HEADROOM * limit:
                break
            batch //= 2
        batch = max(batch, checked)
        planned = self.compile(batch)[1]
        return batch, (f"{how} planned within {MEMORY_HEADROOM:.0%} of memory: "
                       f"{planned / 2**30:.1f} of {limit / 2**30:.1f} GiB")


def planned_bytes(compiled) -> int | None:
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
               + stats.temp_size_in_bytes)


def jax_training(plan: Plan, emit, budget: Budget) -> None:
    device = jax.devices()[0]
    bench = TrainingBench(plan, [device])
    batch, why = bench.largest_batch(device, budget)
    while True:
        try:
            row = bench.time(batch)
            break
        except Exception as e:  # planned to fit, did not (fragmentation): halve
            if "RESOURCE_EXHAUSTED" not in str(e) or batch <= 1:
                raise
            batch, why = batch // 2, f"out of memory at {batch}, halved"
    emit({"model": label(plan.train_arch), "framework": "jax", "variant": "trainer's jitted step, donated state",
          "dtype": plan.train_dtype, "resolution": bench.spec.resolution, "batch_choice": why, **row})


def scaling(plan: Plan, emit, budget: Budget) -> None:
    devices = jax.devices()
    if len(devices) < 2:
        emit({"note": f"one {devices[0].device_kind} visible: no data-parallel scaling to measure"})
        return
    counts = sorted({2 ** i for i in range(int(math.log2(len(devices))) + 1)} | {len(devices)})
    single = None
    for count in counts:  # BN statistics per device (DDP's) and, over several devices, averaged over all
        for bn_statistics in steps.BN_STATISTICS[:1 if count == 1 else None]:
            if not budget.allows(f"{count} devices, BN statistics {bn_statistics}"):
                continue
            row = TrainingBench(plan, devices[:count], bn_statistics).time(plan.scaling_batch_per_device * count)
            single = single or row["images_per_second"]
            emit({"devices": count, "bn_statistics": bn_statistics, "batch_per_device": plan.scaling_batch_per_device,
                  **row, "scaling_efficiency": row["images_per_second"] / (count * single)})


def environment() -> dict:
    devices = jax.devices()
    return {"jax_backend": jax.default_backend(), "jax_devices": len(devices),
            "jax_device_kind": devices[0].device_kind, "jax_platform": devices[0].platform,
            "jax_platform_version": getattr(devices[0].client, "platform_version", None),
            "conv_impl_auto": resolve_conv_impl("auto")}


SECTIONS = {"correctness": correctness, "jax_inference": jax_inference, "jax_training": jax_training,
            "scaling": scaling}
