"""Tests of the pasted photos (corpora/scenes/photo_paste.py): one stamp pasted by hand into a
real photo, on a fake Debian package and, where installed, on the hand-chosen photos."""

from pathlib import Path

import pytest
from PIL import Image, ImageChops

from multimodal_s2s.corpora.scenes.backgrounds import DEFAULT_BACKGROUND_ROOT, PACKAGE_BACKGROUNDS
from multimodal_s2s.corpora.scenes.independent import package_images
from multimodal_s2s.corpora.scenes.photo_paste import (
    IMAGE_SIZE,
    PASTED_PHOTOS,
    PhotoPaste,
    paste_photo,
    photo_view,
)
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT, find_objects
from multimodal_s2s.data.scene_captions import parse_caption
from multimodal_s2s.errors import InputError

RED = (255, 0, 0)
PACKAGES = sorted({paste.package for paste in PASTED_PHOTOS})
INSTALLED = DEFAULT_STAMP_ROOT.is_dir() and all(package_images(p) for p in PACKAGES)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[PhotoPaste, Path, Path]:
    """A paste of a red 180 x 90 stamp (in a transparent margin) into a 300 x 200 photo of a
    fake Debian package; the paste, the stamp folder and the dpkg info folder."""
    photo = tmp_path / "wallpapers" / "lake.png"
    photo.parent.mkdir()
    gradient = Image.linear_gradient("L").resize((300, 200))
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient)).save(
        photo
    )
    info = tmp_path / "dpkg"
    info.mkdir()
    (info / "fake-wallpapers.list").write_text(f"/.\n{photo.parent}\n{photo}\n")
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    stamp = Image.new("RGBA", (190, 100), (0, 0, 0, 0))
    stamp.paste(Image.new("RGBA", (180, 90), (*RED, 255)), (5, 5))
    stamp.save(stamps / "kite.png")
    (stamps / "kite.txt").write_text("A kite.\n")
    return PhotoPaste("fake-wallpapers", photo, "kite", (100, 140), 120), stamps, info


def test_the_stamp_is_pasted_in_the_box_the_paste_names(fake) -> None:
    paste, stamps, info = fake

    pasted = paste_photo(paste, stamps, info)

    assert (pasted.image.mode, pasted.image.size) == ("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    # 180 x 90 shrunk to a longer side of 120, centred on (100, 140).
    assert pasted.box == (40, 110, 160, 170)
    background = photo_view(paste, info)
    assert ImageChops.difference(pasted.image, background).getbbox() == pasted.box
    assert pasted.image.getpixel(paste.centre) == RED != background.getpixel(paste.centre)
    assert (pasted.stamp, pasted.caption) == (stamps / "kite.png", "a kite")


def test_the_same_paste_gives_the_same_pixels(fake) -> None:
    paste, stamps, info = fake
    first = paste_photo(paste, stamps, info).image.tobytes()
    assert paste_photo(paste, stamps, info).image.tobytes() == first
    moved = paste._replace(centre=(101, 140))
    assert paste_photo(moved, stamps, info).image.tobytes() != first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"package": "other-wallpapers"}, "not an image of the installed Debian package"),
        ({"object": "yak"}, "names the object 'yak'"),
        ({"side": 200}, "smaller than 200 pixels"),
        ({"centre": (30, 140)}, "leaves the 256-pixel image"),
    ],
)
def test_a_paste_that_cannot_be_made_is_an_input_error(fake, change, message) -> None:
    paste, stamps, info = fake
    with pytest.raises(InputError, match=message):
        paste_photo(paste._replace(**change), stamps, info)


def test_the_photos_come_from_packages_the_training_corpora_never_use() -> None:
    for paste in PASTED_PHOTOS:
        assert paste.package != "mate-backgrounds" and paste.package not in PACKAGE_BACKGROUNDS
        assert not paste.photo.is_relative_to(DEFAULT_BACKGROUND_ROOT)


@pytest.mark.skipif(
    not INSTALLED, reason=f"needs Debian's tuxpaint-stamps-default and {', '.join(PACKAGES)}"
)
@pytest.mark.parametrize("paste", PASTED_PHOTOS, ids=[p.object for p in PASTED_PHOTOS])
def test_the_hand_chosen_pastes(paste: PhotoPaste) -> None:
    pasted = paste_photo(paste)

    assert paste.object in find_objects()
    assert parse_caption(pasted.caption).objects == [paste.object]
    left, top, right, bottom = pasted.box
    assert 0.4 <= max(right - left, bottom - top) / IMAGE_SIZE <= 0.5
    assert all(abs(c - IMAGE_SIZE / 2) <= 0.15 * IMAGE_SIZE for c in paste.centre)
    # The stamp changes the photo inside its box and nowhere else, and covers its centre.
    changed = ImageChops.difference(pasted.image, photo_view(paste))
    bbox = changed.getbbox()
    assert bbox is not None
    assert left <= bbox[0] and top <= bbox[1] and bbox[2] <= right and bbox[3] <= bottom
    assert sum(changed.getpixel(paste.centre)) > 60
    assert paste_photo(paste).image.tobytes() == pasted.image.tobytes()
