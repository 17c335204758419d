from pathlib import Path

import pytest
import torch

from multimodal_s2s.config import load_config
from multimodal_s2s.models.model import build_model
from multimodal_s2s.training.language_model import LanguageModelRunConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("config_file", sorted(RECIPES.glob("*/config.yaml")), ids=str)
def test_every_recipe_config_builds_its_model(config_file):
    config = load_config(config_file, [])
    model = build_model(config, 40)
    assert (model.ctc is None) == (config.loss.ctc_weight == 0)
    assert (model.bag_of_words is None) == (config.loss.bag_of_words_weight == 0)


# ResNet-18's stride 32 leaves a 2 x 2 grid at 64 px; three stages (stride 16) give 4 x 4.
@pytest.mark.parametrize(("overrides", "side"), [([], 2), (["encoder.trunk_layers=3"], 4)])
def test_captioning_recipe_switches_to_resnet_by_name(overrides, side):
    config_file = RECIPES / "scenes_captioning" / "config.yaml"
    config = load_config(config_file, ["encoder.name=resnet", *overrides])
    model = build_model(config, 40).eval()
    memory = model.encode(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)).memory
    assert memory.shape == (1, side * side, config.encoder.output_dim)


def test_the_speechocean762_language_model_config_loads_and_uses_the_models_units():
    config = load_config(RECIPES / "speechocean762_asr" / "lm.yaml", [], LanguageModelRunConfig)
    speech = load_config(RECIPES / "speechocean762_asr" / "config.yaml", [])
    assert config.tokenizer.kind == speech.tokenizer.kind == "char"
    assert (config.model.num_layers, config.model.hidden_dim) == (2, 256)
