"""Checkpoints written by older versions still load: their saved config is converted to this
version's layout (``checkpoint.upgrade_saved_config``)."""

import copy

import pytest

from multimodal_s2s.checkpoint import load_model, save_checkpoint, upgrade_saved_config
from multimodal_s2s.config import ConfigError, config_to_dict, load_config
from multimodal_s2s.models.model import build_model
from multimodal_s2s.text import Tokenizer

SPEECH = ["data.name=speech", "encoder.input_dim=80"]
IMAGES = ["data.name=images", "encoder.name=cnn", "encoder.channels=[4]"]
OLD_VIEWS = {"speed_factors": [], "warp_factors": [], "corner_crops": []}


def _old_layout(overrides: list[str], **views: list[float]) -> dict:
    """A config dict as older versions saved it: every test-time view key under ``search``
    and no ``data.test_views``."""
    raw = config_to_dict(load_config(None, overrides))
    raw["data"].pop("test_views", None)
    raw["search"].update({**OLD_VIEWS, **views})
    return raw


def test_speech_views_move_from_search_to_the_data_config():
    raw = _old_layout(SPEECH, speed_factors=[0.9, 1.1], warp_factors=[1.05])
    before = copy.deepcopy(raw)
    upgraded = upgrade_saved_config(raw)
    assert raw == before  # the saved dict itself is left alone
    assert upgraded["data"]["test_views"] == {"speed_factors": [0.9, 1.1], "warp_factors": [1.05]}
    assert not set(OLD_VIEWS) & set(upgraded["search"])


def test_image_views_move_and_other_modalities_empty_lists_are_dropped():
    upgraded = upgrade_saved_config(_old_layout(IMAGES, corner_crops=[0.88]))
    assert upgraded["data"]["test_views"] == {"corner_crops": [0.88]}
    toy = upgrade_saved_config(_old_layout([]))
    assert "test_views" not in toy["data"] and not set(OLD_VIEWS) & set(toy["search"])


def test_views_of_a_modality_the_data_lacks_are_an_error():
    with pytest.raises(ConfigError, match="search.corner_crops=.0.9. has no place"):
        upgrade_saved_config(_old_layout(SPEECH, corner_crops=[0.9]))


def test_a_config_of_this_version_is_unchanged():
    raw = config_to_dict(load_config(None, [*IMAGES, "data.test_views.corner_crops=[0.8]"]))
    assert upgrade_saved_config(raw) == raw


@pytest.mark.parametrize(
    ("overrides", "views", "expected"),
    [
        (SPEECH, {"speed_factors": [0.9, 1.1]}, {"speed_factors": [0.9, 1.1], "warp_factors": []}),
        (IMAGES, {"corner_crops": [0.88]}, {"corner_crops": [0.88]}),
    ],
)
def test_an_older_checkpoint_loads_with_its_views_in_the_new_place(
    tmp_path, overrides, views, expected
):
    config = load_config(None, overrides)
    tokenizer = Tokenizer.build(["ab"], "char")
    path = tmp_path / "old.pt"
    payload = {
        "config": _old_layout(overrides, **views),
        "tokenizer": tokenizer.state_dict(),
        "model": build_model(config, len(tokenizer)).state_dict(),
    }
    save_checkpoint(payload, path)
    _, _, loaded = load_model(path)
    assert config_to_dict(loaded.data.test_views) == expected
