"""The bad inputs of tests/hostile_probes.py: how each probe's scene is set up, and PROBES, the
table of every probe (tool, arguments, what the error line must name, what must stay as it was)."""
from __future__ import annotations

import functools
import io
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from tests.hostile_probes import REPO_ROOT, Probe, Scene, probe_environment
from tests.test_image_failures import png_header_only

# Holds the lock of the workdir argv[1] until its stdin closes (genet_jax.workdir_lock of this checkout,
# so that a checkout without the module is probed too).
HOLD_LOCK = ("import sys\nfrom genet_jax.workdir_lock import WorkdirLock\nWorkdirLock(sys.argv[1]).acquire()\n"
             "print('held', flush=True)\nsys.stdin.read()\n")


def _write(items: tuple, scene: Scene) -> None:
    for relative, content in items:
        path = scene.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def files(contents: dict) -> Callable[[Scene], None]:
    """Setup: these files (path relative to the probe's folder -> text or bytes)."""
    return functools.partial(_write, tuple(contents.items()))


def folders(*relative: str) -> Callable[[Scene], None]:
    return lambda scene: [(scene.tmp / r).mkdir(parents=True) for r in relative]


def _damage(how: str, scene: Scene) -> None:
    """Truncate to half, or overwrite with other bytes, every array file of the workdir's checkpoint."""
    for path in sorted((scene.workdir / "checkpoints").glob("*/*/**/d/*")):
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if how == "truncate" else bytes(reversed(data)))


def damaged_checkpoint(how: str) -> Callable[[Scene], None]:
    return functools.partial(_damage, how)


def _hold_lock(relative: str, scene: Scene) -> None:
    folder = Path(scene.fill(relative))
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], cwd=REPO_ROOT, text=True,
                              env=probe_environment(REPO_ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def release() -> None:
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    scene.cleanups.append(release)
    if holder.stdout.readline().strip() != "held":
        raise RuntimeError(f"could not hold the lock of {folder}")


def locked(relative: str) -> Callable[[Scene], None]:
    """Setup: another process holds the workdir lock of `relative` (may hold {workdir}) while the probe runs."""
    return functools.partial(_hold_lock, relative)


def all_of(*setups: Callable[[Scene], None]) -> Callable[[Scene], None]:
    return lambda scene: [setup(scene) for setup in setups]


def huge_png_header(side: int = 60_000) -> bytes:
    """A PNG whose header says side x side RGB pixels (10.8 GB decoded), with no pixel data."""
    return png_header_only(side, side)


def encoded_image(mode: str, image_format: str, side: int = 48) -> bytes:
    from PIL import Image
    pixels = (np.arange(side * side * len(mode)) * 37 % 256).astype(np.uint8).reshape(side, side, len(mode))
    out = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if len(mode) == 1 else pixels, mode).save(out, image_format)
    return out.getvalue()


def images(names: dict) -> Callable[[Scene], None]:
    """Setup: image files, each made by a function of no arguments (run when the probe is set up)."""
    return lambda scene: _write(tuple((name, make()) for name, make in names.items()), scene)


GRAYSCALE_PNG = functools.partial(encoded_image, "L", "PNG")
HALF_A_JPEG = lambda: encoded_image("RGB", "JPEG")[:300]  # noqa: E731
CORRUPT_PNG = lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # noqa: E731
NOT_AN_IMAGE = lambda: b"these are not the pixels you are looking for\n"  # noqa: E731
FOREIGN_CHECKPOINT = files({"foreign/README.md": "# my weights\n", "foreign/weights.bin": bytes(range(256))})
SYNTAX_ERROR_CONFIG = "import json\n\ndef get_config():\n    return json.loads('{}'\n"  # line 4: unclosed
NO_GET_CONFIG = "from configs.default import get_config as digits\n\nCONFIG = digits()\n"
BAD_IMPORT_CONFIG = "import genet_jax_no_such_module\n\ndef get_config():\n    return None\n"
TINY_NET = ('{"stem_width": 8, "stem_stride": 1, "final_width": 16, "num_classes": 10, "resolution": 16, '
            '"blocks": [{"block_type": "XX", "depth": 1, "width": 8, "stride": 2}]}')


def train(workdir: str = "{tmp}/run", **overrides) -> tuple[str, ...]:
    """train.py arguments of a seconds-long run of a tiny network in `workdir`, with `overrides`."""
    from tests.helpers import tiny_args
    return tuple(tiny_args(workdir, **overrides))


def search_setup(scene: Scene) -> None:
    from tests.nas_helpers import TINY_SEARCH_CONFIG
    (scene.tmp / "search.py").write_text(TINY_SEARCH_CONFIG)


SEARCH = ("--config", "{tmp}/search.py", "--config.workdir={tmp}/search")
PREDICT = ("--checkpoint", "{workdir}")
SKIPPED_IMAGE_EXIT_CODE = 1  # genet_jax.predict: undecodable images are reported and skipped
KEPT = ("{workdir}/checkpoints", "{workdir}/config.json")  # what a refused run must leave as it was


def _probes() -> list[Probe]:
    P = Probe
    return [
        # train.py: config values and types
        P("train_batch_size_zero", "train.py", train(batch_size=0), ("config.batch_size",)),
        P("train_batch_size_not_a_number", "train.py", train(batch_size="lots"), ("batch_size",)),
        P("train_unknown_config_field", "train.py", train(**{"optim.learning_rate": 0.1}), ("learning_rate",)),
        P("train_unknown_architecture", "train.py", train(model="genet_huge"), ("config.model", "genet_huge")),
        P("train_flag_typo", "train.py", ("--confg.batch_size=8",), ("confg",)),
        P("train_negative_learning_rate", "train.py", train(**{"optim.lr_per_256": -1.0}),
          ("config.optim.lr_per_256", "must be > 0")),
        P("train_unknown_augment_policy", "train.py", train(**{"augment.policy": "fancy"}),
          ("config.augment.policy", "fancy")),
        P("train_extra_argument", "train.py", (*train(), "extra"), ("unexpected arguments", "extra")),
        P("train_imagenet_without_its_download", "train.py",
          ("--config", "{repo}/configs/imagenet_genet_normal.py", "--config.workdir={tmp}/run",
           "--config.data.data_dir={tmp}/tfds"), ("ILSVRC2012_img_train.tar", "{tmp}/tfds/downloads/manual")),
        P("train_nan_loss", "train.py", train("{workdir}", steps=8, **{"optim.lr_per_256": 1e30}), ("NaN",),
          needs_workdir=True, unchanged=("{workdir}/checkpoints",)),
        # train.py: config files
        P("train_config_file_missing", "train.py", ("--config", "{tmp}/missing.py"), ("{tmp}/missing.py",)),
        P("train_config_file_is_a_folder", "train.py", ("--config", "{tmp}/configs"), ("{tmp}/configs",),
          setup=folders("configs")),
        P("train_config_syntax_error", "train.py", ("--config", "{tmp}/broken.py"), ("{tmp}/broken.py", "line 4"),
          setup=files({"broken.py": SYNTAX_ERROR_CONFIG})),
        P("train_config_without_get_config", "train.py", ("--config", "{tmp}/plain.py"),
          ("{tmp}/plain.py", "get_config"), setup=files({"plain.py": NO_GET_CONFIG})),
        P("train_config_import_fails", "train.py", ("--config", "{tmp}/imports.py"),
          ("{tmp}/imports.py", "genet_jax_no_such_module"), setup=files({"imports.py": BAD_IMPORT_CONFIG})),
        # train.py: workdirs and checkpoints
        P("train_workdir_is_a_file", "train.py", train("{tmp}/taken"), ("{tmp}/taken",),
          setup=files({"taken": "a file\n"})),
        P("train_workdir_under_read_only", "train.py", train("{ro}/missing/run"), ("{ro}/missing",)),
        P("train_workdir_in_use", "train.py", train("{workdir}", steps=8), ("{workdir}", "in use"),
          needs_workdir=True, setup=locked("{workdir}"), unchanged=KEPT),
        P("train_init_from_truncated_checkpoint", "train.py", train(**{"init_from.checkpoint": "{workdir}"}),
          ("{workdir}",), needs_workdir=True, setup=damaged_checkpoint("truncate")),
        P("train_teacher_foreign_folder", "train.py", train(**{"teacher.checkpoint": "{tmp}/foreign"}),
          ("{tmp}/foreign",), setup=FOREIGN_CHECKPOINT),
        P("train_data_folder_missing", "train.py", train(**{"data.source": "folder:{tmp}/no_images"}),
          ("{tmp}/no_images",)),
        P("train_without_optax", "train.py", train(), ("optax", "install"), hidden_packages=("optax",)),
        # search.py
        P("search_shard_out_of_range", "search.py", (*SEARCH, "--shard", "2/2"), ("--shard",), setup=search_setup),
        P("search_shard_not_i_of_n", "search.py", (*SEARCH, "--shard=x"), ("--shard must look like i/n",),
          setup=search_setup),
        P("search_finetune_before_the_master", "search.py", (*SEARCH, "--stage=finetune"),
          ("run the MasterNet step first",), setup=search_setup),
        P("search_unknown_latency_engine", "search.py", (*SEARCH, "--config.latency.engine=tensorrt"),
          ("config.latency: engine must be one of",), setup=search_setup),
        P("search_onnxruntime_in_bfloat16", "search.py",
          (*SEARCH, "--config.latency.engine=onnxruntime", "--config.latency.dtype=bfloat16"),
          ("config.latency: the onnxruntime engine runs float32 or float16",), setup=search_setup),
        P("search_unknown_onnxruntime_provider", "search.py",
          (*SEARCH, "--config.latency.engine=onnxruntime", "--config.latency.provider=NoSuchProvider"),
          ("'NoSuchProvider' is not available",), setup=search_setup),
        P("search_unknown_stage", "search.py", (*SEARCH, "--stage", "polish"), ("--stage",), setup=search_setup),
        P("search_no_holdout", "search.py", (*SEARCH, "--config.train.data.holdout_size=0"), ("holdout_size",),
          setup=search_setup),
        P("search_workdir_in_use", "search.py", (*SEARCH, "--stage", "select"), ("{tmp}/search", "in use"),
          setup=all_of(search_setup, locked("{tmp}/search"))),
        # export
        P("export_unknown_format", "genet_jax.export", ("torch", "--arch", "genet_light", "--format", "zip",
                                                        "--out", "{tmp}/net.pth"), ("--format",)),
        P("export_old_form_unknown_format", "genet_jax.export", ("--arch", "genet_light", "--format", "zip",
                                                                 "--out", "{tmp}/net.pth"), ("--format",)),
        P("export_bad_onnx_dtype", "genet_jax.export", ("onnx", "--arch", "genet_light", "--dtype", "int4",
                                                        "--out", "{tmp}/net.onnx"), ("--dtype",)),
        P("export_opset_flag", "genet_jax.export", ("onnx", "--arch", "genet_light", "--opset", "7",
                                                    "--out", "{tmp}/net.onnx"), ("--opset",)),
        P("export_int8_without_calibration", "genet_jax.export", ("int8", "--arch", "genet_light",
                                                                  "--out", "{tmp}/net.onnx"), ("--calibration",)),
        P("export_empty_checkpoint_folder", "genet_jax.export", ("torch", "--checkpoint", "{tmp}/empty", "--format",
                                                                 "torch", "--out", "{tmp}/net.pth"), ("{tmp}/empty",),
          setup=folders("empty")),
        P("export_truncated_checkpoint", "genet_jax.export", ("torch", "--checkpoint", "{workdir}", "--format",
                                                              "torch", "--out", "{tmp}/net.pth"), ("{workdir}",),
          needs_workdir=True, setup=damaged_checkpoint("truncate")),
        P("export_text_as_pth", "genet_jax.export", ("import", "{tmp}/notes.pth", "--out", "{tmp}/imported"),
          ("{tmp}/notes.pth",), setup=files({"notes.pth": "not a PyTorch file\n"})),
        # predict
        P("predict_missing_image", "genet_jax.predict", (*PREDICT, "{tmp}/missing.jpg"), ("{tmp}/missing.jpg",),
          needs_workdir=True, exit_code=SKIPPED_IMAGE_EXIT_CODE),
        P("predict_zero_byte_image", "genet_jax.predict", (*PREDICT, "{tmp}/empty.png"), ("{tmp}/empty.png",),
          needs_workdir=True, setup=files({"empty.png": b""}), exit_code=SKIPPED_IMAGE_EXIT_CODE),
        P("predict_truncated_image", "genet_jax.predict", (*PREDICT, "{tmp}/half.jpg"), ("{tmp}/half.jpg",),
          needs_workdir=True, setup=images({"half.jpg": HALF_A_JPEG}), exit_code=SKIPPED_IMAGE_EXIT_CODE),
        P("predict_text_as_image", "genet_jax.predict", (*PREDICT, "{tmp}/text.jpg"), ("{tmp}/text.jpg",),
          needs_workdir=True, setup=images({"text.jpg": NOT_AN_IMAGE}), exit_code=SKIPPED_IMAGE_EXIT_CODE),
        P("predict_huge_header_image", "genet_jax.predict", (*PREDICT, "{tmp}/huge.png"), ("{tmp}/huge.png",),
          needs_workdir=True, setup=images({"huge.png": huge_png_header}), exit_code=SKIPPED_IMAGE_EXIT_CODE),
        P("predict_grayscale_beside_corrupt", "genet_jax.predict", (*PREDICT, "{tmp}/gray.png", "{tmp}/bad.png"),
          ("{tmp}/bad.png",), needs_workdir=True, exit_code=SKIPPED_IMAGE_EXIT_CODE, stdout_names=("{tmp}/gray.png",),
          setup=images({"gray.png": GRAYSCALE_PNG, "bad.png": CORRUPT_PNG})),
        P("predict_negative_top_k", "genet_jax.predict", (*PREDICT, "--top-k", "-1", "{tmp}/gray.png"), ("--top-k",),
          needs_workdir=True, setup=images({"gray.png": GRAYSCALE_PNG})),
        P("predict_foreign_checkpoint", "genet_jax.predict", ("--checkpoint", "{tmp}/foreign", "{tmp}/gray.png"),
          ("{tmp}/foreign",), setup=all_of(FOREIGN_CHECKPOINT, images({"gray.png": GRAYSCALE_PNG}))),
        # evaluate
        P("evaluate_empty_checkpoint_folder", "genet_jax.evaluate", ("--checkpoint", "{tmp}/empty"),
          ("{tmp}/empty",), setup=folders("empty")),
        P("evaluate_garbled_checkpoint", "genet_jax.evaluate", ("--checkpoint", "{workdir}"), ("{workdir}",),
          needs_workdir=True, setup=damaged_checkpoint("garble")),
        P("evaluate_text_as_onnx", "genet_jax.evaluate", ("--onnx", "{tmp}/net.onnx"), ("{tmp}/net.onnx",),
          setup=files({"net.onnx": "not a model\n"})),
        P("evaluate_onnxruntime_not_installed", "genet_jax.evaluate", ("--onnx", "{tmp}/net.onnx"),
          ("onnxruntime", "install"), setup=files({"net.onnx": "not a model\n"}), hidden_packages=("onnxruntime",)),
        # latency, summary, launch, measure
        P("latency_zero_batch", "genet_jax.latency", ("--arch", TINY_NET, "--batch", "0"), ("--batch",)),
        P("latency_unknown_architecture", "genet_jax.latency", ("--arch", "genet_huge"), ("genet_huge",)),
        P("summary_garbage_structure_file", "genet_jax.summary", ("{tmp}/net.txt",), ("{tmp}/net.txt",),
          setup=files({"net.txt": "this is not a structure string\n"})),
        P("launch_missing_script", "genet_jax.launch", ("--processes", "1", "--", "{tmp}/missing.py"),
          ("{tmp}/missing.py",)),
        P("batch_sweep_bad_batches", "genet_jax.measure.batch_sweep", ("--arch", TINY_NET, "--batches", "1,two",
                                                                       "--out", "{tmp}/sweep"), ("--batches",)),
        P("kernel_rank_missing_source", "genet_jax.measure.kernel_rank", ("{tmp}/missing.pth", "--out", "{tmp}/rank"),
          ("{tmp}/missing.pth",)),
    ]


PROBES = _probes()
assert len({p.name for p in PROBES}) == len(PROBES), "probe names must be unique"


