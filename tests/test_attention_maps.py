"""Tests for the Show-Attend-Tell attention figure."""

import math

import pytest
import torch
from PIL import Image

from multimodal_s2s.frontends.image import Crop
from multimodal_s2s.inference.attention_maps import (
    LABEL_HEIGHT,
    MIN_BRIGHTNESS,
    PADDING,
    PANEL_COLUMNS,
    save_attention_map,
)

WIDTH, HEIGHT = 64, 48
GRID = (4, 4)  # (H', W'): each grid cell covers 12 x 16 pixels
GRAY = (200, 200, 200)


def _expected_size(num_words: int) -> tuple[int, int]:
    panels = num_words + 1
    columns = min(panels, PANEL_COLUMNS)
    rows = math.ceil(panels / columns)
    return (
        columns * (WIDTH + PADDING) + PADDING,
        rows * (LABEL_HEIGHT + HEIGHT + PADDING) + PADDING,
    )


def _panel(figure: Image.Image, index: int, num_words: int) -> Image.Image:
    columns = min(num_words + 1, PANEL_COLUMNS)
    left = PADDING + (index % columns) * (WIDTH + PADDING)
    top = PADDING + (index // columns) * (LABEL_HEIGHT + HEIGHT + PADDING) + LABEL_HEIGHT
    return figure.crop((left, top, left + WIDTH, top + HEIGHT))


def _one_hot(cells: list[tuple[int, int]]) -> torch.Tensor:
    """(T, S) weights, step t putting all its attention on grid cell cells[t] = (row, col)."""
    weights = torch.zeros(len(cells), GRID[0] * GRID[1])
    for step, (row, col) in enumerate(cells):
        weights[step, row * GRID[1] + col] = 1.0
    return weights


@pytest.mark.parametrize("num_words", [1, 2, 4, 5, 7, 12])
def test_figure_size_follows_the_panel_layout(tmp_path, num_words):
    path = tmp_path / "attention.png"
    words = [f"w{index}" for index in range(num_words)]
    weights = torch.softmax(torch.randn(num_words, GRID[0] * GRID[1]), dim=-1)
    save_attention_map(Image.new("RGB", (WIDTH, HEIGHT), GRAY), words, weights, GRID, path)
    with Image.open(path) as figure:
        assert figure.format == "PNG"
        figure.load()
        assert figure.size == _expected_size(num_words)


def test_brightest_region_of_a_panel_is_the_attended_cell(tmp_path):
    path = tmp_path / "attention.png"
    cells = [(1, 3), (3, 0), (0, 1)]
    save_attention_map(
        Image.new("RGB", (WIDTH, HEIGHT), GRAY), ["a", "red", "ball"], _one_hot(cells), GRID, path
    )
    figure = Image.open(path).convert("L")
    for step, (row, col) in enumerate(cells):
        panel = torch.tensor(list(_panel(figure, step + 1, len(cells)).tobytes())).view(
            HEIGHT, WIDTH
        )
        cell_height, cell_width = HEIGHT // GRID[0], WIDTH // GRID[1]
        brightest_row, brightest_col = divmod(int(panel.argmax()), WIDTH)
        assert brightest_row // cell_height == row
        assert brightest_col // cell_width == col
        assert int(panel.max()) == pytest.approx(200, abs=1)  # full brightness at the peak
        assert int(panel.min()) == pytest.approx(round(200 * MIN_BRIGHTNESS), abs=2)


def test_first_panel_is_the_original_image(tmp_path):
    path = tmp_path / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), (10, 20, 30))
    image.paste((250, 0, 0), (0, 0, 20, 20))
    save_attention_map(image, ["x"], _one_hot([(0, 0)]), GRID, path)
    figure = Image.open(path).convert("RGB")
    assert _panel(figure, 0, 1).tobytes() == image.tobytes()


def test_uniform_attention_leaves_the_image_unchanged(tmp_path):
    path = tmp_path / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), (90, 160, 30))
    weights = torch.full((1, GRID[0] * GRID[1]), 1.0 / 16, dtype=torch.float64)
    save_attention_map(image, ["field"], weights, GRID, path)
    figure = Image.open(path).convert("RGB")
    assert _panel(figure, 1, 1).tobytes() == image.tobytes()


def test_words_are_written_above_their_panels(tmp_path):
    path = tmp_path / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), GRAY)
    save_attention_map(image, ["dog", ""], _one_hot([(0, 0), (1, 1)]), GRID, path)
    figure = Image.open(path).convert("L")

    def darkest_in_label(index: int) -> int:
        left = PADDING + index * (WIDTH + PADDING)
        band = figure.crop((left, PADDING, left + WIDTH, PADDING + LABEL_HEIGHT))
        return band.getextrema()[0]

    assert darkest_in_label(1) < 100  # "dog" is drawn in black
    assert darkest_in_label(2) == 255  # an empty word leaves the band white


def test_writes_atomically_over_an_existing_file_and_creates_directories(tmp_path):
    path = tmp_path / "figures" / "deep" / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), GRAY)
    weights = _one_hot([(0, 0)]).requires_grad_()
    save_attention_map(image, ["a"], weights, GRID, path)
    save_attention_map(image, ["a", "b"], _one_hot([(0, 0), (1, 1)]), GRID, path)
    assert Image.open(path).size == _expected_size(2)
    assert [entry.name for entry in path.parent.iterdir()] == ["attention.png"]


def test_rgba_image_is_accepted(tmp_path):
    path = tmp_path / "attention.png"
    image = Image.new("RGBA", (WIDTH, HEIGHT), (1, 2, 3, 255))
    save_attention_map(image, ["a"], _one_hot([(2, 2)]), GRID, path)
    assert Image.open(path).size == _expected_size(1)


@pytest.mark.parametrize(
    "shape",
    [(2, 16), (1, 15), (16,), (1, 1, 16)],
    ids=["too_many_steps", "wrong_grid", "one_dimensional", "three_dimensional"],
)
def test_rejects_weights_of_the_wrong_shape(tmp_path, shape):
    path = tmp_path / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), GRAY)
    with pytest.raises(ValueError, match="weights must have shape"):
        save_attention_map(image, ["a"], torch.ones(shape), GRID, path)
    assert not path.exists()


def test_long_words_are_cut_to_the_panel_width(tmp_path):
    path = tmp_path / "attention.png"
    image = Image.new("RGB", (WIDTH, HEIGHT), GRAY)
    save_attention_map(image, ["extraordinarily-long-word"], _one_hot([(0, 0)]), GRID, path)
    figure = Image.open(path).convert("L")
    panel_right = PADDING + 2 * (WIDTH + PADDING) - PADDING
    label_band = figure.crop((PADDING + WIDTH + PADDING, 0, panel_right, LABEL_HEIGHT + PADDING))
    right_margin = figure.crop((panel_right, 0, figure.width, LABEL_HEIGHT + PADDING))
    assert label_band.getextrema()[0] < 100  # the (shortened) word is drawn
    assert right_margin.getextrema() == (255, 255)  # and it stops at the panel's edge


def test_a_cropped_view_puts_the_grid_over_its_crop_box(tmp_path):
    """Uniform attention over a half-side crop in the bottom-right corner lights exactly that
    quarter of the picture; the rest is dimmed."""
    path = tmp_path / "attention.png"
    weights = torch.full((1, GRID[0] * GRID[1]), 1.0 / (GRID[0] * GRID[1]))
    image = Image.new("RGB", (WIDTH, HEIGHT), GRAY)
    save_attention_map(image, ["x"], weights, GRID, path, Crop(0.5, 1.0, 1.0))
    panel = _panel(Image.open(path).convert("L"), 1, 1)
    pixels = torch.tensor(list(panel.tobytes())).view(HEIGHT, WIDTH)
    dimmed = round(200 * MIN_BRIGHTNESS)
    assert (pixels[HEIGHT // 2 :, WIDTH // 2 :] == 200).all()
    assert (pixels[: HEIGHT // 2] - dimmed).abs().max() <= 1
    assert (pixels[:, : WIDTH // 2] - dimmed).abs().max() <= 1
