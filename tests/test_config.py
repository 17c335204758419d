import pytest

from multimodal_s2s.config import ConfigError, config_from_dict, config_to_dict, load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.attention import AdditiveConfig
from multimodal_s2s.models.encoders.cnn import CNNConfig


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "encoder: {name: pblstm, input_dim: 40, num_layers: 2}\n"
        "decoder: {hidden_dim: 64, attention: additive}\n"
    )
    config = load_config(path, ["encoder.num_layers=4", "decoder.attention.gate=true"])
    assert config.encoder.input_dim == 40 and config.encoder.num_layers == 4
    assert config.decoder.attention == AdditiveConfig(gate=True)
    assert config.decoder.hidden_dim == 64


def test_swapping_the_encoder_is_one_override():
    config = load_config(None, ["encoder.name=cnn", "encoder.channels=[8, 16]"])
    assert config.encoder == CNNConfig(channels=[8, 16])


def test_round_trip_through_plain_data():
    config = load_config(
        None, ["encoder.name=resnet", "decoder.attention=dot", "loss.label_smoothing=0"]
    )
    assert config_from_dict(config_to_dict(config)) == config
    assert isinstance(config.loss.label_smoothing, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["encoder.hidden_size=3"], "unknown config key 'encoder.hidden_size'"),
        (["decoder.attention.gate=true"], "unknown config key 'decoder.attention.gate'"),
        (["trainer.epochs=3"], "unknown config key 'trainer'"),
        (["encoder.num_layers=two"], "encoder.num_layers: expected int"),
        (["encoder.num_layers=true"], "encoder.num_layers: expected int"),
        (["train.learning_rate=[1]"], "train.learning_rate: expected float"),
        (["decoder.init_state=random"], "decoder.init_state: expected one of 'mean', 'zeros'"),
        (["encoder.name=transformer"], "encoder.name: unknown 'transformer'"),
        (["encoder.channels=[1, a]", "encoder.name=cnn"], "encoder.channels: expected list"),
        (["encoder"], "not of the form key.sub=value"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("encoder: {name: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


@pytest.mark.parametrize("source", ["speech", "images"])
def test_data_sources_share_split_and_worker_checks(source):
    with pytest.raises(InputError, match="data.test: split name 'dev' is reserved"):
        config_from_dict({"data": {"name": source, "test": {"dev": "d.jsonl"}}})
    with pytest.raises(InputError, match="data.num_workers must be >= 0"):
        config_from_dict({"data": {"name": source, "num_workers": -1}})
    config = config_from_dict({"data": {"name": source, "test": {"clean": "c.jsonl"}}})
    assert config.data.name == source and config.data.test == {"clean": "c.jsonl"}
