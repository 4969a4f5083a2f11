"""CI's core-install leg (.ci/run): in a venv holding `pip install .` alone (no extras), the core works
(import, a model from a local weights file, a forward pass, the summary tool, predict with pretrained
weights) and the train extra's tools say in one line what they need. Exits non-zero on the first failure."""
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what only the extras bring (flax itself depends on optax, orbax-checkpoint and absl; huggingface_hub on tqdm)
NOT_IN_THE_CORE = ("grain", "ml_collections", "tensorboardX", "matplotlib", "sklearn", "torch", "onnx",
                   "onnxruntime", "tensorflow_datasets")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def main() -> None:
    present = [name for name in NOT_IN_THE_CORE if importlib.util.find_spec(name) is not None]
    assert not present, f"the core install pulled in {present}"

    import genet_jax
    from genet_jax.interop.state_dict import to_state_dict
    from safetensors.numpy import save_file
    assert genet_jax.__file__.startswith(sys.prefix), f"not the installed package: {genet_jax.__file__}"

    spec = genet_jax.NetworkSpec(8, (genet_jax.SuperBlockSpec("XX", 1, 16, 2, 3, 1.0),
                                     genet_jax.SuperBlockSpec("DW", 1, 16, 2, 3, 3.0)), 32, num_classes=1000,
                                 resolution=32)
    model = genet_jax.create_model(spec)
    variables = genet_jax.init_variables(model, 0)
    inputs = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        weights = os.path.join(scratch, "model.safetensors")
        save_file({k: np.array(v, order="C") for k, v in to_state_dict(spec, variables, "timm").items()}, weights)
        restored, restored_variables = genet_jax.create_model(spec, pretrained=weights)
        np.testing.assert_array_equal(restored.apply(restored_variables, inputs), model.apply(variables, inputs))
        genet_jax.save_pretrained(os.path.join(scratch, "hub"), spec, variables,
                                  class_names=genet_jax.pretrained.imagenet_class_names())
        from PIL import Image
        Image.fromarray((np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)).save(
            os.path.join(scratch, "image.jpg"))
        predicted = run("-m", "genet_jax.predict", "--pretrained", os.path.join(scratch, "hub"),
                        os.path.join(scratch, "image.jpg"))
        assert predicted.returncode == 0, predicted.stderr[-2000:]

    summary = run("-m", "genet_jax.summary", "genet_normal")
    assert summary.returncode == 0 and "21,142,920" in summary.stdout, summary.stderr[-2000:]
    for command in (["train.py"], ["search.py"], ["-m", "genet_jax.evaluate", "--checkpoint", "x"],
                    ["-m", "genet_jax.export", "torch", "--arch", "genet_light", "--out", "x.pth"]):
        done = run(*command)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "needs the train extra" in lines[0], (command, done.stderr)
        print(f"{' '.join(command)}: {lines[0]}")
    print("core install: import, pretrained=file, forward, save_pretrained, predict and summary work")


if __name__ == "__main__":
    main()
