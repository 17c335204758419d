"""Tests for the model-side image frontend: normalisation and batched train-time augmentation."""

import pytest
import torch

from multimodal_s2s.config import load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import build_frontend
from multimodal_s2s.frontends.image import (
    CROP_SCALE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Crop,
    ImageAugmentation,
    ImageFrontend,
    color_jitter,
    random_blur,
    random_noise,
    random_resized_crop,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _split_images(batch: int, size: int = 32) -> torch.Tensor:
    """``(batch, 3, size, size)`` uint8: red left half, blue right half."""
    images = torch.zeros(batch, 3, size, size, dtype=torch.uint8)
    images[:, 0, :, : size // 2] = 255
    images[:, 2, :, size // 2 :] = 255
    return images


@pytest.mark.parametrize("device", DEVICES)
def test_eval_mode_normalises_exactly_and_never_augments(device):
    frontend = ImageFrontend(augment=True).to(device).eval()
    white = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8, device=device)
    normalised, lengths = frontend(white, None)
    assert lengths is None and normalised.dtype == torch.float32
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(normalised.cpu(), expected.view(1, 3, 1, 1).expand(2, 3, 8, 8))
    images = _split_images(4).to(device)
    torch.testing.assert_close(frontend(images, None)[0], frontend(images, None)[0])


def test_training_augmentation_stays_float32_under_bfloat16_autocast():
    frontend = ImageFrontend().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        augmented, _ = frontend(_split_images(4), None)
    assert augmented.dtype == torch.float32


def test_training_without_augment_equals_eval():
    images = _split_images(4)
    plain = ImageFrontend(augment=False).train()(images, None)[0]
    torch.testing.assert_close(plain, ImageFrontend().eval()(images, None)[0])


@pytest.mark.parametrize("device", DEVICES)
def test_training_augments_each_image_differently_but_never_flips(device):
    frontend = ImageFrontend(augment=True).to(device).train()
    torch.manual_seed(0)
    images = _split_images(16).to(device)
    augmented, _ = frontend(images, None)
    assert augmented.shape == images.shape
    plain = frontend.eval()(images, None)[0]
    assert not torch.allclose(augmented, plain)
    assert not torch.allclose(augmented[0], augmented[1])  # same picture, own random draw
    red_minus_blue = augmented[:, 0] - augmented[:, 2]
    assert (red_minus_blue[:, :, :4] > 0).all()  # red stays on the left
    assert (red_minus_blue[:, :, -4:] < 0).all()  # blue stays on the right


def test_crop_removes_at_most_a_tenth_of_each_side_and_keeps_order():
    """A horizontal ramp stays increasing and still spans >= ~90% of its range."""
    torch.manual_seed(0)
    ramp = torch.linspace(0.0, 1.0, 64).expand(200, 3, 64, 64).contiguous()
    cropped = random_resized_crop(ramp)
    row = cropped[:, 0, 32]
    assert (row[:, 1:] >= row[:, :-1] - 1e-6).all()
    smallest_side = (CROP_SCALE[0] * 0.95) ** 0.5
    assert (row[:, 0] <= 1.0 - smallest_side + 0.02).all()
    assert (row[:, -1] >= smallest_side - 0.02).all()
    assert (row[:, -1] - row[:, 0]).min() < 0.97  # some crops do cut the image


def test_crop_keeps_a_corner_object_in_view():
    """A 25%-of-side object in the corner stays mostly visible after any train crop."""
    torch.manual_seed(0)
    images = torch.zeros(100, 3, 64, 64)
    images[:, :, :16, :16] = 1.0
    bright = random_resized_crop(images).mean(dim=1) > 0.5
    assert bright[:, 0, 0].all()
    assert (bright.sum(dim=(1, 2)) >= 0.3 * 16 * 16).all()


def test_colour_jitter_keeps_gray_gray_within_the_brightness_range():
    torch.manual_seed(0)
    gray = torch.full((500, 3, 4, 4), 0.5)
    jittered = color_jitter(gray)
    assert torch.allclose(jittered[:, 0], jittered[:, 1]) and torch.allclose(
        jittered[:, 1], jittered[:, 2]
    )  # contrast and saturation leave a uniform gray image alone; hue is never touched
    level = jittered[:, 0, 0, 0]
    assert level.min() >= 0.2 - 1e-6 and level.max() <= 0.8 + 1e-6  # brightness 1 +- 0.6
    assert level.min() < 0.22 and level.max() > 0.78


def test_colour_jitter_changes_saturation_and_stays_in_range():
    torch.manual_seed(0)
    red = torch.zeros(200, 3, 4, 4)
    red[:, 0] = 0.8
    jittered = color_jitter(red)
    assert jittered.min() >= 0.0 and jittered.max() <= 1.0
    assert jittered[:, 1].max() > 0.0  # desaturation mixes gray into the other channels
    assert (jittered[:, 0] > jittered[:, 1]).all()  # but red stays red


def test_frontend_rejects_float_images_and_saves_no_state():
    frontend = ImageFrontend()
    with pytest.raises(InputError, match="uint8"):
        frontend(torch.zeros(1, 3, 8, 8), None)
    with pytest.raises(InputError, match=r"\(1, 1, 8, 8\)"):
        frontend(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), None)
    assert frontend.state_dict() == {}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_given_crop_is_cut_and_resampled_to_the_full_size_in_either_mode(mode):
    """A half-side crop at the bottom-right corner equals that quarter upsampled 2x (but for
    the first row and column, which interpolate with the pixels just outside the box)."""
    images = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    frontend = ImageFrontend(augment=False)
    getattr(frontend, mode)()
    cropped, _ = frontend(images, None, Crop(0.5, 1.0, 1.0))
    quarter = images[:, :, 8:, 8:].float() / 255.0
    expected = torch.nn.functional.interpolate(quarter, size=(16, 16), mode="bilinear")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(cropped[:, :, 1:, 1:], ((expected - mean) / std)[:, :, 1:, 1:])
    whole, _ = frontend(images, None, Crop(1.0, 0.5, 0.5))
    torch.testing.assert_close(whole, frontend(images, None)[0])


def test_default_augmentation_draws_as_it_always_has():
    """The default ``ImageAugmentation`` is the crop and colour jitter of the module's
    constants, drawing the same random numbers (runs trained before it reproduce)."""
    images = _split_images(6)
    torch.manual_seed(3)
    augmented, _ = ImageFrontend().train()(images, None)
    torch.manual_seed(3)
    expected = color_jitter(random_resized_crop(images.float() / 255.0))
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(augmented, (expected - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))


def test_blur_softens_a_share_of_the_images_and_keeps_the_rest():
    torch.manual_seed(0)
    checks = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2
    images = checks.float().expand(400, 3, 16, 16).contiguous()
    blurred = random_blur(images, 0.25, (0.6, 1.2))
    changed = (blurred - images).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert 0.15 < changed.float().mean() < 0.35
    assert blurred[changed].std() < 0.5 * images.std()  # the checks are smoothed away
    torch.testing.assert_close(blurred[~changed], images[~changed])
    torch.testing.assert_close(blurred.mean(), images.mean(), atol=0.01, rtol=0)


def test_noise_is_added_to_a_share_of_the_images_and_stays_in_range():
    torch.manual_seed(0)
    gray = torch.full((400, 3, 8, 8), 0.5)
    noisy = random_noise(gray, 0.5, (0.02, 0.05))
    spread = noisy.std(dim=(1, 2, 3))
    assert 0.4 < (spread > 0).float().mean() < 0.6
    assert spread.max() < 0.07 and spread[spread > 0].min() > 0.01
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0


def test_augmentation_is_a_data_setting_of_the_model():
    config = load_config(
        None,
        [
            "data.name=images",
            "data.augmentation.blur_probability=0.3",
            "data.augmentation.noise_std=[0.01, 0.02]",
            "data.augmentation.brightness=0.3",
        ],
    )
    frontend = build_frontend(config.data)
    assert frontend.augmentation == ImageAugmentation(
        blur_probability=0.3, noise_std=[0.01, 0.02], brightness=0.3
    )
    assert ImageFrontend().augmentation == ImageAugmentation(blur_probability=0.0)
    for bad in ("crop_scale=[0.5, 1.2]", "brightness=1.5", "noise_probability=2", "blur_sigma=[1]"):
        with pytest.raises(InputError, match="data.augmentation"):
            load_config(None, ["data.name=images", f"data.augmentation.{bad}"])
