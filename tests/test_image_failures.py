"""Every image that cannot be decoded is a named skip, counted once per file: decompression bombs
(a header claiming 50000x50000 pixels), files above data.max_image_pixels (checked on the header,
before decoding), whatever Pillow raises; counted once whatever the epoch or thread (worker
processes: tests/test_input_workers.py), and once between data.cache_decoded and the pipeline."""
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from genet_jax.data import pipeline
from genet_jax.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageError, load_rgb
from genet_jax.training.config import ConfigError, validate_config
from genet_jax.training.inputs import open_sources

BOMB_SIDE = 50000  # 2.5e9 pixels claimed: above twice Pillow's limit, where Pillow itself refuses
BAND_SIDE = 10000  # 1e8 pixels claimed: above Pillow's limit but not twice it, where Pillow only warns
SIZE, BATCH, EPOCHS = 8, 4, 3
GOOD_SIDE = 8
LIMIT = GOOD_SIDE * GOOD_SIDE  # the folder's data.max_image_pixels: its good images are exactly at the limit
BAD_FILES = ("bomb.png", "above_limit.jpg", "corrupt.jpg")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG of an IHDR chunk and no pixel data: tiny, whatever size it claims."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A real 4x4 GIF whose logical screen (bytes 6-9, little-endian) is patched to width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "GIF")
    return buffer.getvalue()[:6] + struct.pack("<HH", width, height) + buffer.getvalue()[10:]


def save_jpeg(path, side: int, rng: np.random.Generator) -> None:
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, claiming", [("bomb.png", png_header_only), ("bomb.gif", gif_claiming)])
def test_a_decompression_bomb_is_an_image_error_naming_the_file(tmp_path, name, claiming):
    path = write(tmp_path / name, claiming(BOMB_SIDE, BOMB_SIDE))
    with pytest.raises(ImageError, match=rf"{name}: too large to decode \(Image size \(2500000000 pixels\)"):
        load_rgb(path)


def test_what_pillow_raises_is_an_image_error_too(tmp_path):
    """E.g. its DecompressionBombWarning where warnings are errors (python -W error)."""
    path = write(tmp_path / "band.png", png_header_only(BAND_SIDE, BAND_SIDE))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="band.png: too large to decode"):
            load_rgb(path)


def test_the_pixel_limit_is_checked_on_the_header_before_decoding(tmp_path):
    path = tmp_path / "ten.png"
    Image.new("RGB", (10, 10)).save(path)
    assert load_rgb(path, max_pixels=100).size == (10, 10)
    with pytest.raises(ImageError, match="ten.png: 10x10 pixels, more than the limit of 99"):
        load_rgb(path, max_pixels=99)
    no_pixel_data = write(tmp_path / "no_pixel_data.png", png_header_only(20, 20))  # decoding it: "truncated"
    with pytest.raises(ImageError, match="no_pixel_data.png: 20x20 pixels, more than the limit of 100"):
        load_rgb(no_pixel_data, max_pixels=100)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's warning; our default limit skips it unread
        with pytest.raises(ImageError, match=f"{BAND_SIDE}x{BAND_SIDE} pixels, more than the limit of 89,478,485"):
            load_rgb(write(tmp_path / "band.png", png_header_only(BAND_SIDE, BAND_SIDE)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/ and val/ of good 8x8 JPEGs; train/ also holds the three bad files, val/ one above the limit."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                save_jpeg(root / split / name / f"{i}.jpg", GOOD_SIDE, rng)
    (root / "train" / "cat" / "bomb.png").write_bytes(png_header_only(BOMB_SIDE, BOMB_SIDE))
    save_jpeg(root / "train" / "cat" / "above_limit.jpg", GOOD_SIDE + 1, rng)
    (root / "train" / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    save_jpeg(root / "val" / "dog" / "above_limit.jpg", GOOD_SIDE + 1, rng)
    return root


def folder_config(root, cache_decoded: bool = False):
    config = base_config()
    config.data.source, config.data.eval_split = f"folder:{root}", "val"
    config.data.max_image_pixels, config.data.cache_decoded = LIMIT, cache_decoded
    config.data.num_threads, config.progress_bar = 2, False
    return config


def take_epochs(source, skips, epochs: int = EPOCHS) -> list[dict]:
    batches = iter(pipeline.train_dataset(source, base_config().augment, SIZE, BATCH, 0, 2, skips))
    return [next(batches) for _ in range(epochs * len(source) // BATCH)]


def test_each_bad_file_is_counted_once_over_epochs_and_threads(folder):
    train_source, eval_source = open_sources(folder_config(folder))
    skips = pipeline.SkipCounter("train")
    batches = take_epochs(train_source, skips)
    assert all(batch["image"].shape == (BATCH, SIZE, SIZE, 3) for batch in batches)
    assert skips.count == len(BAD_FILES) and len(skips.examples) == len(BAD_FILES)
    assert sorted(next(n for n in BAD_FILES if n in e) for e in skips.examples) == sorted(BAD_FILES)
    eval_skips = pipeline.SkipCounter("eval")  # the limit reaches evaluation as well
    evaluated = sum(int(b["mask"].sum()) for b in pipeline.eval_batches(eval_source, SIZE, 1.0, BATCH, 2, eval_skips))
    assert eval_skips.count == 1 and "above_limit.jpg: 9x9 pixels" in eval_skips.examples[0] and evaluated == 8


def test_cached_decoding_counts_each_bad_file_once_and_the_pipeline_none_again(folder):
    train_source, eval_source = open_sources(folder_config(folder, cache_decoded=True))
    assert train_source.skipped == len(BAD_FILES) and len(train_source) == 8
    assert eval_source.skipped == 1 and len(eval_source) == 8
    skips = pipeline.SkipCounter("train")
    take_epochs(train_source, skips)
    assert skips.count == 0


@pytest.mark.parametrize("value", [0, -1, None, DEFAULT_MAX_IMAGE_PIXELS + 1])
def test_max_image_pixels_is_validated(value):
    config = base_config()
    config.data.max_image_pixels = value
    with pytest.raises(ConfigError, match="config.data.max_image_pixels: must be"):
        validate_config(config)


def test_max_image_pixels_defaults_to_pillows_limit_and_may_reach_what_pillow_allows(monkeypatch):
    config = base_config()
    assert config.data.max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS
    validate_config(config)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a program that turned Pillow's check off
    config.data.max_image_pixels = 10 * DEFAULT_MAX_IMAGE_PIXELS
    validate_config(config)
