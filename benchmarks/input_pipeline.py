"""Images/s of the ImageNet recipe's training input pipeline on this CPU: an image folder of JPEGs,
decoded and augmented on the host as configs/imagenet_recipe.py does it (random-resized crop to the
config's resolution, 192 for GENet-normal, and flip; and the same with AutoAugment), in threads of
the training process (data.worker_count 0, data.num_threads = the cores) and in grain worker
processes (data.worker_count 1, 2, 4, ... up to the cores; 1 or 2 threads each).

    python benchmarks/input_pipeline.py [--arch genet_normal] [--images 400] [--batch 128] [--runs 10]
                                        [--warmup 2] [--quick] [--out PATH]

The JPEGs are generated (seeded): smooth multi-scale colour fields, flat shapes and luminance
texture in patches, at ImageNet's typical sizes (500x375, 500x333, 375x500), quality 90, about
110 KB each, in CLASSES class folders. They are read from the page cache, so this measures the CPU
work (decoding, augmentation, batching, moving batches between processes), not the disk.

Protocol (the paper's where it applies): per configuration a fresh iterator, `warmup` runs
discarded (worker start-up), then `runs` timed runs of a fixed number of batches each
(RUN_BATCHES_PER_SLOT per decoding thread, at least MIN_BATCHES_PER_RUN); images/s of each run,
top and bottom 10% dropped, the mean. Per core: images/s over the cores this process may use (its
CPU affinity). "Cores per GPU": the cores the best configuration needs to feed X images/s to one
GPU, X / (its images/s per core).

Writes benchmarks/results/input_pipeline.json (with --quick, by default a file in the temporary
directory, so the committed result stays) and prints a table.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import importlib
import os
import sys
import tempfile
import time
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.machine import machine_info, provenance, save_result  # noqa: E402
from genet_jax.data import pipeline, workers  # noqa: E402
from genet_jax.data.autoaugment import make_policy  # noqa: E402
from genet_jax.data.sources import open_source  # noqa: E402
from genet_jax.latency.timing import PAPER_TRIM, trimmed_mean  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "input_pipeline.json")
QUICK_OUT = os.path.join(tempfile.gettempdir(), "input_pipeline_quick.json")
QUICK = {"images": 24, "batch": 8, "runs": 2, "warmup": 1}
ARCHS = ("genet_light", "genet_normal", "genet_large")
AUGMENTS = {"crop+flip": "none", "crop+flip+autoaugment": "autoaugment"}  # row label: augment.policy
THREADS_PER_WORKER = (1, 2)
GPU_IMAGES_PER_SECOND = (2000, 4000, 8000)  # training speeds one GPU might need fed
SEED = 0

CLASSES = 4
IMAGE_SIZES = [((500, 375), 0.6), ((500, 333), 0.25), ((375, 500), 0.15)]  # (width, height), share
JPEG_QUALITY = 90
SHAPES_PER_IMAGE = 12
COLOUR_AMPLITUDE, COLOUR_ROUGHNESS = 90.0, 0.6  # pixel levels; weight of each finer scale (x0.5) over the last
TEXTURE_AMPLITUDE = 45.0  # pixel levels of the luminance texture: ~110 KB per JPEG at quality 90
SENSOR_NOISE = 3.0  # pixel levels
MIN_BATCHES_PER_RUN = 4
RUN_BATCHES_PER_SLOT = 2


def upsampled_noise(rng: np.random.Generator, width: int, height: int, scale: int, channels: int) -> np.ndarray:
    """Standard-normal noise on a grid `scale` pixels apart, bicubically interpolated to the image."""
    grid = rng.standard_normal((height // scale + 2, width // scale + 2, channels)).astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.BICUBIC))
                     for c in range(channels)], -1)


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour fields, flat shapes, luminance texture in about half the image, sensor noise."""
    scales = [max(width, height) >> k for k in range(7)]
    weights = [COLOUR_ROUGHNESS ** k for k in range(len(scales))]
    colour = sum(w * upsampled_noise(rng, width, height, s, 3) for w, s in zip(weights, scales)) / sum(weights)
    image = Image.fromarray(np.clip(rng.uniform(40, 200, 3) + COLOUR_AMPLITUDE * colour, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(SHAPES_PER_IMAGE):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (width, height)
        w, h = rng.uniform(0.05, 0.5, 2) * (width, height)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    textured = 0.25 + 0.75 * (upsampled_noise(rng, width, height, 128, 1) > 0)
    texture = sum(upsampled_noise(rng, width, height, s, 1) for s in (1, 2, 4, 8))
    pixels = np.asarray(image, np.float32) + TEXTURE_AMPLITUDE * textured * texture
    pixels += rng.normal(0, SENSOR_NOISE, (height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_jpegs(root: str, count: int, threads: int) -> dict:
    """`count` JPEGs in root/train/<class>/; their size statistics."""
    shares = np.asarray([share for _, share in IMAGE_SIZES])

    def write(index: int) -> int:
        rng = np.random.default_rng([SEED, index])
        width, height = IMAGE_SIZES[rng.choice(len(IMAGE_SIZES), p=shares / shares.sum())][0]
        directory = os.path.join(root, "train", f"class{index % CLASSES}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{index:05d}.jpg")
        natural_image(rng, width, height).save(path, quality=JPEG_QUALITY)
        return os.path.getsize(path)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        sizes = list(tqdm(pool.map(write, range(count)), total=count, desc="writing JPEGs", unit="img"))
    return {"count": count, "classes": CLASSES, "quality": JPEG_QUALITY, "mean_kb": float(np.mean(sizes)) / 1024,
            "min_kb": min(sizes) / 1024, "max_kb": max(sizes) / 1024,
            "sizes": {f"{w}x{h}": share for (w, h), share in IMAGE_SIZES}}


def configurations(cores: int) -> list[dict]:
    """Threads (as many as cores), then workers 1, 2, 4, ... cores with 1 or 2 threads each."""
    counts = sorted({min(2 ** k, cores) for k in range(cores.bit_length() + 1)})
    rows = [{"mode": "threads", "worker_count": 0, "num_threads": cores}]
    rows += [{"mode": "workers", "worker_count": n, "num_threads": t} for n in counts for t in THREADS_PER_WORKER]
    for row in rows:
        row["decoding_threads"] = row["num_threads"] * max(1, row["worker_count"])
    return rows


def measure(source, augment, size: int, batch: int, config: dict, runs: int, warmup: int, progress) -> list[float]:
    """Images/s of each timed run of a fresh iterator of `config` (after `warmup` runs)."""
    batches_per_run = max(MIN_BATCHES_PER_RUN, RUN_BATCHES_PER_SLOT * config["decoding_threads"])
    iterator = workers.train_iterator(source, augment, size, batch, SEED, config["num_threads"],
                                      config["worker_count"], pipeline.SkipCounter("benchmark"), make_policy(augment))
    rates = []
    try:
        for run in range(warmup + runs):
            started = time.perf_counter()
            for _ in range(batches_per_run):
                next(iterator)
            if run >= warmup:
                rates.append(batch * batches_per_run / (time.perf_counter() - started))
            progress.update()
    finally:
        iterator.close()
    config["batches_per_run"] = batches_per_run
    return rates


def measure_all(args, source, cores: int) -> list[dict]:
    recipe = importlib.import_module(f"configs.imagenet_{args.arch}").get_config()
    plan = [(label, config) for label in AUGMENTS for config in configurations(cores)]
    if args.quick:  # threads, and one worker of one thread
        plan = [(label, c) for label, c in plan if c["worker_count"] == 0 or c["decoding_threads"] == 1]
    rows = []
    with tqdm(total=len(plan) * (args.warmup + args.runs), desc="timed runs", unit="run") as progress:
        for label, config in plan:
            augment = copy.deepcopy(recipe.augment)
            augment.policy = AUGMENTS[label]
            progress.set_postfix_str(f"{label}, {config['mode']} {config['worker_count']}x{config['num_threads']}")
            rates = measure(source, augment, recipe.resolution, args.batch, config, args.runs, args.warmup, progress)
            ips = trimmed_mean(rates, PAPER_TRIM)
            rows.append({"augment": label, **config, "runs": rates, "images_per_second": ips,
                         "images_per_second_per_core": ips / cores})
    for row in rows:
        threads = next(r for r in rows if r["augment"] == row["augment"] and r["worker_count"] == 0)
        row["x_threads"] = row["images_per_second"] / threads["images_per_second"]
    return rows


def cores_per_gpu(rows: list[dict]) -> dict:
    """Per augmentation: the fastest configuration, and the cores it needs per GPU for each X images/s."""
    out = {}
    for label in AUGMENTS:
        best = max((r for r in rows if r["augment"] == label), key=lambda r: r["images_per_second"])
        out[label] = {"best": f"{best['mode']} {best['worker_count']}x{best['num_threads']}",
                      "images_per_second_per_core": best["images_per_second_per_core"],
                      **{str(x): x / best["images_per_second_per_core"] for x in GPU_IMAGES_PER_SECOND}}
    return out


def print_table(rows: list[dict], needs: dict, cores: int) -> None:
    print(f"\n| augmentation | mode | workers | threads each | images/s | images/s per core ({cores}) | x threads |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['augment']} | {r['mode']} | {r['worker_count']} | {r['num_threads']} | "
              f"{r['images_per_second']:.0f} | {r['images_per_second_per_core']:.1f} | {r['x_threads']:.2f} |")
    print("\n| augmentation | best | images/s per core | " + " | ".join(
        f"cores per GPU at {x} images/s" for x in GPU_IMAGES_PER_SECOND) + " |")
    print("|---|---|---|" + "---|" * len(GPU_IMAGES_PER_SECOND))
    for label, need in needs.items():
        print(f"| {label} | {need['best']} | {need['images_per_second_per_core']:.1f} | "
              + " | ".join(f"{need[str(x)]:.1f}" for x in GPU_IMAGES_PER_SECOND) + " |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=ARCHS, default="genet_normal",
                        help="whose configs/imagenet_<arch>.py gives resolution and augmentation")
    parser.add_argument("--images", type=int, default=400, help="JPEGs to generate (the stream repeats them)")
    parser.add_argument("--batch", type=int, default=128, help="per-host batch")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (worker start-up)")
    parser.add_argument("--quick", action="store_true", help="smoke test: " + ", ".join(
        f"{k} {v}" for k, v in QUICK.items()) + ", threads and 1 worker only, output to a temporary file")
    parser.add_argument("--out", default=None, help=f"default {DEFAULT_OUT} ({QUICK_OUT} with --quick)")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    for name in ("images", "batch", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main() -> int:
    args = parse_args()
    cores = len(os.sched_getaffinity(0))
    machine = machine_info(grain=metadata.version("grain"), pillow=Image.__version__)
    print(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs ({cores} usable); grain {machine['grain']}, "
          f"Pillow {machine['pillow']}; {args.arch}, batch {args.batch}; {args.runs} runs after {args.warmup} "
          f"warm-up, trim {PAPER_TRIM}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        images = write_jpegs(root, args.images, cores)
        print(f"{images['count']} JPEGs, {images['mean_kb']:.0f} KB on average", flush=True)
        rows = measure_all(args, open_source(f"folder:{root}", "train"), cores)
    needs = cores_per_gpu(rows)
    print_table(rows, needs, cores)
    machine.update(load_average_at_end=os.getloadavg(), usable_cores=cores)
    protocol = {"runs": args.runs, "warmup_runs": args.warmup, "trim": PAPER_TRIM, "statistic": "trimmed mean",
                "batches_per_run": f"max({MIN_BATCHES_PER_RUN}, {RUN_BATCHES_PER_SLOT} x decoding threads)"}
    result = {"arch": args.arch, "batch": args.batch, "quick": args.quick, "images": images, "protocol": protocol,
              "machine": machine, "rows": rows, "cores_per_gpu": needs, "seconds": time.perf_counter() - started,
              "provenance": provenance(machine)}
    save_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
