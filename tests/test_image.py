"""Tests for image loading, transforms and image-file discovery."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal_s2s.data.image import (
    SUPPORTED_IMAGE_EXTENSIONS,
    build_image_transform,
    find_image_files,
    load_image,
)
from multimodal_s2s.errors import InputError

RED = (255, 0, 0)
BLUE = (0, 0, 255)
LOSSLESS_FORMATS = ["png", "bmp", "gif"]


def _split_image(width: int = 40, height: int = 20) -> Image.Image:
    """RGB image whose left half is red and right half is blue."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def _assert_close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> None:
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


@pytest.mark.parametrize("extension", ["png", "bmp", "gif", "jpg", "jpeg", "webp"])
def test_load_image_reads_every_supported_format_as_rgb(tmp_path, extension):
    path = tmp_path / f"picture.{extension}"
    _split_image().save(path)
    image = load_image(path)
    tolerance = 0 if extension in LOSSLESS_FORMATS else 40
    assert image.mode == "RGB"
    assert image.size == (40, 20)
    _assert_close(image.getpixel((5, 10)), RED, tolerance)
    _assert_close(image.getpixel((35, 10)), BLUE, tolerance)


def test_supported_extensions_cover_the_brief():
    assert set(SUPPORTED_IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def test_load_image_takes_the_first_gif_frame(tmp_path):
    path = tmp_path / "animated.gif"
    first, second = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    assert load_image(path).getpixel((4, 4)) == RED


def test_load_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    _split_image(width=40, height=20).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)
    _assert_close(image.getpixel((10, 5)), RED, 40)  # the left half is now on top
    _assert_close(image.getpixel((10, 35)), BLUE, 40)


def test_load_image_converts_grayscale_and_palette(tmp_path):
    gray_path, palette_path = tmp_path / "gray.png", tmp_path / "palette.png"
    Image.new("L", (4, 4), 77).save(gray_path)
    _split_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(palette_path)
    assert load_image(gray_path).getpixel((1, 1)) == (77, 77, 77)
    palette_image = load_image(palette_path)
    assert palette_image.mode == "RGB"
    assert palette_image.getpixel((5, 10)) == RED


def test_load_image_scales_sixteen_bit_grayscale(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 257 * 100, dtype=np.uint16)).save(path)
    assert load_image(path).getpixel((0, 0)) == (100, 100, 100)


def test_load_image_composites_rgba_onto_background(tmp_path):
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 255))
    image.putpixel((2, 0), (255, 0, 0, 128))
    image.save(path)
    on_white = load_image(path)
    assert on_white.getpixel((0, 0)) == (255, 255, 255)
    assert on_white.getpixel((1, 0)) == RED
    _assert_close(on_white.getpixel((2, 0)), (255, 127, 127), 1)
    assert load_image(path, background=(0, 128, 0)).getpixel((0, 0)) == (0, 128, 0)


def test_load_image_composites_gray_alpha_and_palette_transparency(tmp_path):
    gray_alpha_path, palette_path = tmp_path / "la.png", tmp_path / "ptrans.png"
    Image.new("LA", (2, 2), (0, 0)).save(gray_alpha_path)
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 1), 1)
    palette.save(palette_path, transparency=0)
    assert load_image(gray_alpha_path).getpixel((0, 0)) == (255, 255, 255)
    palette_image = load_image(palette_path, background=(1, 2, 3))
    assert palette_image.getpixel((0, 0)) == (1, 2, 3)
    assert palette_image.getpixel((1, 1)) == RED


def test_load_image_missing_file_names_it(tmp_path):
    path = tmp_path / "absent.png"
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: image file not found$"):
        load_image(path)


def test_load_image_corrupt_file_names_it(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot read image") as raised:
        load_image(path)
    assert "\n" not in str(raised.value)


def test_load_image_truncated_file_names_it(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.png"):
        load_image(path)


def test_load_image_unsupported_extension_names_it(tmp_path):
    path = tmp_path / "scan.tiff"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: unsupported image extension"):
        load_image(path)


def test_load_image_rejects_other_format_behind_supported_extension(tmp_path):
    path = tmp_path / "actually_tiff.png"
    Image.new("RGB", (4, 4)).save(path, format="TIFF")
    with pytest.raises(InputError, match="actually_tiff.png"):
        load_image(path)


def test_large_images_load_quietly_and_only_bombs_are_refused(tmp_path, monkeypatch):
    """Pillow warns for images of 1-2 times its pixel limit and refuses larger ones."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    large, bomb = tmp_path / "large.png", tmp_path / "bomb.png"
    _split_image(12, 12).save(large)  # 144 pixels
    _split_image(15, 15).save(bomb)  # 225 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(large).size == (12, 12)
    with pytest.raises(InputError, match="bomb.png"):
        load_image(bomb)


def test_transform_resizes_to_a_uint8_square():
    transform = build_image_transform(16)
    tensor = transform(Image.new("RGB", (50, 30), (255, 128, 0)))
    assert type(tensor) is torch.Tensor
    assert tensor.shape == (3, 16, 16)
    assert tensor.dtype == torch.uint8
    assert tensor[:, 0, 0].tolist() == [255, 128, 0]


def test_transform_is_deterministic_and_keeps_left_right():
    transform = build_image_transform(32)
    image = _split_image(width=64, height=48)
    first, second = transform(image), transform(image)
    torch.testing.assert_close(first, second)
    assert (first[0, :, :8] == 255).all() and (first[2, :, :8] == 0).all()  # red on the left
    assert (first[2, :, -8:] == 255).all() and (first[0, :, -8:] == 0).all()  # blue on the right


@pytest.mark.parametrize("bad_size", [0, -3, 2.5, True])
def test_transform_rejects_bad_image_size(bad_size):
    with pytest.raises(InputError, match="image_size"):
        build_image_transform(bad_size)


def _touch_images(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return [root / name for name in names]


def test_find_image_files_expands_directories_recursively_and_sorted(tmp_path):
    _touch_images(tmp_path, ["b.png", "a.JPG", "sub/c.webp", "notes.txt", "sub/d.tiff"])
    found = find_image_files([str(tmp_path)])
    assert found == [tmp_path / "a.JPG", tmp_path / "b.png", tmp_path / "sub" / "c.webp"]


def test_find_image_files_mixes_files_and_globs_without_duplicates(tmp_path):
    first, second, third = _touch_images(tmp_path, ["x1.png", "x2.gif", "y.bmp"])
    found = find_image_files([str(third), str(tmp_path / "x*"), str(first)])
    assert found == [third, first, second]
    (tmp_path / "sub").mkdir()
    other_spelling = str(tmp_path / "sub" / ".." / "y.bmp")
    assert find_image_files([other_spelling, str(third)]) == [Path(other_spelling)]


def test_find_image_files_recursive_glob(tmp_path):
    _touch_images(tmp_path, ["one/a.png", "two/deeper/b.png", "two/c.jpg"])
    found = find_image_files([str(tmp_path / "**" / "*.png")])
    assert found == [tmp_path / "one" / "a.png", tmp_path / "two" / "deeper" / "b.png"]


def test_find_image_files_missing_path_names_it(tmp_path):
    with pytest.raises(InputError, match="nowhere.png"):
        find_image_files([str(tmp_path / "nowhere.png")])


def test_find_image_files_unmatched_pattern_names_it(tmp_path):
    _touch_images(tmp_path, ["a.png"])
    with pytest.raises(InputError, match=r"\*\.jpg"):
        find_image_files([str(tmp_path / "*.jpg")])


def test_find_image_files_empty_directory_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        find_image_files([str(tmp_path / "empty")])


def test_find_image_files_unsupported_file_names_it(tmp_path):
    _touch_images(tmp_path, ["notes.txt"])
    with pytest.raises(InputError, match="notes.txt"):
        find_image_files([str(tmp_path / "notes.txt")])
