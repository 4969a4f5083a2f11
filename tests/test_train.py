"""`python train.py` end to end: configs, resume after kill -9, NaN, SIGTERM, multi-device
equivalence, image folders with bad files, fine-tuning an imported PyTorch checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from PIL import Image

import genet_jax as g
from configs.common import base_config
from genet_jax import export, interop
from genet_jax.checkpoint import load_model_checkpoint
from genet_jax.training import optim, steps
from genet_jax.training.config import ConfigError, validate_config
from genet_jax.training.loop import TrainingDiverged, check_finite
from genet_jax.training.train_checkpoints import TrainCheckpointer
from tests.conftest import REPO_ROOT
from tests.helpers import TINY, tiny_args
from tests.test_image_failures import BOMB_SIDE, png_header_only


def run_train(args, env=None, **kwargs):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, **kwargs)


def final_params(workdir, raw=False):
    return jax.tree_util.tree_leaves(load_model_checkpoint(workdir, raw=raw).variables)


@pytest.mark.parametrize("field, value", [("conv_impl", "cudnn"), ("bn_statistics", "sync"),
                                          ("augment.randaugment_magnitude", 11)])
def test_choices_and_ranges_are_validated(field, value):
    config = base_config()
    *parents, name = field.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    node[name] = value
    with pytest.raises(ConfigError, match=f"config.{field}"):
        validate_config(config)


@pytest.mark.compat
def test_overrides_are_applied_and_saved(tmp_path):
    result = run_train(tiny_args(tmp_path, steps=2, seed=7, **{"augment.label_smoothing": 0.2}))
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["seed"] == 7 and saved["augment"]["label_smoothing"] == 0.2 and saved["num_train_steps"] == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 2 and 0 <= metrics["eval"]["top1"] <= 1
    assert "checkpoints:" in result.stdout
    evaluated = subprocess.run([sys.executable, "-m", "genet_jax.evaluate", f"--checkpoint={tmp_path}",
                                "--config.data.eval_batch_size=64"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["split"] == "test" and report["count"] == metrics["eval"]["count"]
    assert abs(report["top1"] - metrics["eval"]["top1"]) < 1e-6


@pytest.mark.slow
def test_kill9_then_rerun_equals_uninterrupted(tmp_path):
    """With the EMA of the weights and 2 accumulated micro-batches per step: both weights resume."""
    ema_and_accumulation = {"optim.ema_decay": 0.9, "optim.accumulate_steps": 2}
    reference = run_train(tiny_args(tmp_path / "ref", steps=24, **ema_and_accumulation))
    assert reference.returncode == 0, reference.stderr
    args = tiny_args(tmp_path / "killed", steps=24, **ema_and_accumulation)
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        done = [d for d in os.listdir(checkpoints) if d.isdigit()] if checkpoints.is_dir() else []
        if any(int(d) >= 8 for d in done):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_at_kill = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    assert steps_at_kill and max(steps_at_kill) < 24
    resumed = run_train(args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert f"took over the lock of {tmp_path / 'killed'} from pid {process.pid}" in resumed.stderr
    for raw in (False, True):
        for a, b in zip(final_params(tmp_path / "ref", raw), final_params(tmp_path / "killed", raw)):
            assert np.array_equal(a, b)  # bit-identical: deterministic data order, RNG and XLA CPU kernels
    saved_config = (tmp_path / "killed" / "config.json").read_text()
    other_model = run_train(tiny_args(tmp_path / "killed", steps=24, model=TINY.replace('"stem_width": 8', '"stem_width": 12')))
    assert other_model.returncode == 2 and "no step restores" in other_model.stderr.strip().splitlines()[-1]
    assert (tmp_path / "killed" / "config.json").read_text() == saved_config  # the refused run's config is not saved


@pytest.mark.compat
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    result = run_train(tiny_args(tmp_path, steps=40, **{"optim.lr_per_256": 1e12, "optim.warmup_epochs": 2.0,
                                                        "checkpoint.every_steps": 2}))
    assert result.returncode == 2
    ckpt = load_model_checkpoint(tmp_path)
    last_line = result.stderr.strip().splitlines()[-1]
    assert "the loss became NaN or inf" in last_line
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / str(ckpt.step)}." in last_line
    assert "float32" not in last_line  # the run is float32 already
    assert ckpt.step >= 2
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(ckpt.variables))


def test_a_nan_before_the_first_checkpoint_says_there_is_none(tmp_path):
    tx = optax.sgd(optax.constant_schedule(0.1))
    diverged = steps.init_state({"params": {"w": np.zeros(2, np.float32)}, "batch_stats": {}}, tx)
    diverged = diverged.replace(nonfinite=np.int32(1))
    checkpointer = TrainCheckpointer(str(tmp_path), keep=1, async_save=False)
    try:
        with pytest.raises(TrainingDiverged) as caught:
            check_finite(diverged, 3, optax.constant_schedule(0.1), checkpointer, "bfloat16")
    finally:
        checkpointer.close()
    assert "no checkpoint had been saved yet" in str(caught.value) and "(step None)" not in str(caught.value)
    assert str(caught.value).endswith("or use config.dtype=float32.")


def test_sigterm_saves_before_exit(tmp_path):
    args = tiny_args(tmp_path, steps=100000, **{"checkpoint.every_steps": 100000})
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tensorboard = tmp_path / "tensorboard"
    deadline = time.time() + 240
    while time.time() < deadline and not (tensorboard.is_dir() and any(
            os.path.getsize(tensorboard / f) > 200 for f in os.listdir(tensorboard))):
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["interrupted"] and 0 < metrics["step"] < 100000
    assert load_model_checkpoint(tmp_path).step == metrics["step"]


def _write_folder(root, with_bad_files):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog")):
            directory = root / split / name
            directory.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(directory / f"{i}.jpg")
    if with_bad_files:
        rgb = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(rgb[..., 0]).save(root / "train" / "cat" / "gray.jpg")
        Image.fromarray(rgb).convert("CMYK").save(root / "train" / "cat" / "cmyk.jpg")
        Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(root / "train" / "dog" / "alpha.png")
        (root / "train" / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        (root / "train" / "dog" / "bomb.png").write_bytes(png_header_only(BOMB_SIDE, BOMB_SIDE))
        (root / "val" / "dog" / "corrupt.jpg").write_bytes(b"")


@pytest.mark.parametrize("cache_decoded", [False, True])
def test_image_folder_with_bad_files(tmp_path, cache_decoded):
    _write_folder(tmp_path / "data", with_bad_files=True)
    result = run_train(tiny_args(tmp_path / "run", steps=4, batch_size=8, **{
        "data.source": f"folder:{tmp_path / 'data'}", "data.eval_split": "validation", "data.eval_batch_size": 8,
        "augment.policy": "randaugment", "augment.random_resized_crop": True, "data.cache_decoded": cache_decoded}))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_train_images"] == 2  # the corrupt JPEG and the bomb, once however often visited
    assert metrics["eval"]["skipped_images"] == 1 and metrics["eval"]["count"] == 12
    assert "corrupt.jpg" in result.stderr and "bomb.png: too large to decode" in result.stderr  # named in the log
    assert metrics["model"]["num_classes"] == 2


def test_finetune_imported_pytorch_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from genet_jax.interop.torch_model import TorchGENet  # needs torch, an optional dependency (skip above)

    spec = g.resolve_spec("genet_light")
    torch.manual_seed(0)
    official = interop.convert_state_dict(TorchGENet(spec).state_dict(), spec, "torch", "official")
    torch.save({"state_dict": official}, tmp_path / "GENet_small.pth")
    assert export.main(["import", str(tmp_path / "GENet_small.pth"), "--out", str(tmp_path / "imported")]) == 0
    _write_folder(tmp_path / "data", with_bad_files=False)
    result = run_train(tiny_args(tmp_path / "run", steps=3, batch_size=4, model="genet_light", resolution=32, **{
        "init_from.checkpoint": str(tmp_path / "imported"), "data.source": f"folder:{tmp_path / 'data'}",
        "data.eval_batch_size": 4, "optim.lr_per_256": 0.01}))
    assert result.returncode == 0, result.stderr
    tuned = load_model_checkpoint(tmp_path / "run")
    imported = load_model_checkpoint(tmp_path / "imported")
    assert tuned.spec.num_classes == 2 and tuned.variables["params"]["head"]["kernel"].shape == (1920, 2)
    before = imported.variables["params"]["stage2"]["unit3"]["conv2"]["conv"]["kernel"]
    after = tuned.variables["params"]["stage2"]["unit3"]["conv2"]["conv"]["kernel"]
    assert np.corrcoef(before.ravel(), after.ravel())[0, 1] > 0.99  # inherited, not re-drawn
    assert not np.array_equal(before, after)  # and trained


def test_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # dev-only dependency
    assert run_train(tiny_args(tmp_path, steps=4)).returncode == 0
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/top1", "train/images_per_second", "eval/top1", "eval/top5"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]


@pytest.mark.slow
def test_embedded_default_reaches_97_percent(tmp_path):
    started = time.time()
    result = run_train([f"--config.workdir={tmp_path}", "--config.progress_bar=false"])
    elapsed = time.time() - started
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["eval"]["top1"] >= 0.97, metrics["eval"]
    assert f"checkpoints: {tmp_path / 'checkpoints'}" in result.stdout
    print(f"embedded default: top-1 {metrics['eval']['top1']:.4f} in {elapsed:.0f} s")


def test_teacher_distillation(tmp_path):
    assert run_train(tiny_args(tmp_path / "teacher", steps=4)).returncode == 0
    plain = run_train(tiny_args(tmp_path / "plain", steps=4))
    taught = run_train(tiny_args(tmp_path / "taught", steps=4, **{
        "teacher.checkpoint": str(tmp_path / "teacher"), "teacher.temperature": 2.0}))
    assert plain.returncode == 0 and taught.returncode == 0, taught.stderr
    assert not all(np.array_equal(a, b) for a, b in zip(final_params(tmp_path / "plain"),
                                                        final_params(tmp_path / "taught")))
    _write_folder(tmp_path / "data", with_bad_files=False)  # 2 classes; the teacher knows 10
    mismatch = run_train(tiny_args(tmp_path / "bad", steps=2, **{
        "teacher.checkpoint": str(tmp_path / "teacher"), "data.source": f"folder:{tmp_path / 'data'}"}))
    assert mismatch.returncode == 2 and "config.teacher.checkpoint: the teacher has 10 classes, the data 2" \
        in mismatch.stderr


@pytest.mark.slow
def test_imagenet_recipe_trains_on_a_folder(tmp_path):
    _write_folder(tmp_path / "data", with_bad_files=False)
    result = run_train(["--config", "configs/imagenet_genet_light.py", f"--config.workdir={tmp_path / 'run'}",
                        f"--config.data.source=folder:{tmp_path / 'data'}", "--config.num_train_steps=2",
                        "--config.batch_size=4", "--config.data.eval_batch_size=4", "--config.resolution=32",
                        "--config.progress_bar=false", "--config.data.num_threads=2"])
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["eval"]["count"] == 12
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["augment"]["policy"] == "autoaugment" and saved["dtype"] == "bfloat16"


@pytest.mark.compat
def test_float16_dynamic_loss_scaling_skips_overflow_without_stopping():
    config = base_config()
    config.dtype = "float16"
    config.optim.fp16_initial_loss_scale = 2.0 ** 60  # overflows float16 gradients for sure
    config.optim.warmup_epochs = 0.0  # skipped steps do not advance the schedule: lr 0 at the first update
    model = g.create_model(TINY, dtype="float16")
    schedule = optim.learning_rate_schedule(config.optim, 8, 100, 10)
    tx = optim.make_optimizer(config.optim, schedule)
    state = steps.init_state(g.init_variables(model), tx, steps.initial_loss_scale(config))
    step = jax.jit(steps.make_train_step(model, tx, config, schedule))
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), "label": np.arange(8, dtype=np.int32)}
    before = jax.tree_util.tree_leaves(state.params)
    new, metrics = step(state, batch, jax.random.PRNGKey(0), None)
    assert float(metrics["loss_scale"]) == 2.0 ** 60 and np.isfinite(float(metrics["loss"]))
    assert float(new.loss_scale) == 2.0 ** 59 and int(new.nonfinite) == 0  # skipped, not a divergence
    for a, b in zip(before, jax.tree_util.tree_leaves(new.params)):
        np.testing.assert_array_equal(a, b)
    for _ in range(60):
        new, _ = step(new, batch, jax.random.PRNGKey(0), None)
        if int(new.finite_streak) > 0:
            break
    assert int(new.finite_streak) > 0 and int(new.nonfinite) == 0  # found a scale that fits, then trained
    assert any(not np.array_equal(a, b) for a, b in zip(before, jax.tree_util.tree_leaves(new.params)))
    bf16 = base_config()
    bf16.dtype = "bfloat16"
    assert steps.initial_loss_scale(bf16) == 1.0
