import pytest
import torch

from multimodal_s2s.config import load_config
from multimodal_s2s.models.model import build_model
from multimodal_s2s.text import teacher_forcing_pair
from multimodal_s2s.training.train import Trainer

VOCAB = 12


def tiny_model(overrides: list[str], dtype: torch.dtype = torch.float32, seed: int = 0):
    """A small random model in eval mode built from dotted overrides on the defaults."""
    torch.manual_seed(seed)
    config = load_config(None, overrides)
    return build_model(config, VOCAB).to(dtype).eval(), config


SOURCE_SHAPES = {
    "pblstm": [
        "encoder.name=pblstm",
        "encoder.input_dim=6",
        "data.feature_dim=6",
        "encoder.hidden_dim=8",
        "encoder.num_layers=2",
    ],
    "conv_pblstm": [
        "encoder.name=conv_pblstm",
        "encoder.input_dim=6",
        "data.feature_dim=6",
        "encoder.hidden_dim=8",
        "encoder.num_layers=1",
        "encoder.conv_channels=[3, 3]",
    ],
    "cnn": ["encoder.name=cnn", "encoder.channels=[4, 8]", "data.name=toy_images"],
    "resnet": [
        "encoder.name=resnet",
        "encoder.trunk_layers=1",
        "encoder.output_dim=16",
        "data.name=toy_images",
    ],
}
# Tiny toy training tasks (overrides on the default config) that train in seconds.
SEQUENCES = [
    "data.name=toy_sequences",
    "data.feature_dim=8",
    "encoder.name=pblstm",
    "encoder.input_dim=8",
    "encoder.hidden_dim=32",
    "encoder.num_layers=1",
    "search.max_length_ratio=4.0",
]
IMAGES = [
    "data.name=toy_images",
    "data.image_size=16",
    "encoder.name=cnn",
    "encoder.channels=[16, 32]",
    "tokenizer.kind=word",
    "decoder.attention={name: additive, gate: true}",
    "loss.attention_penalty=0.1",
]
SMALL = [
    "decoder.hidden_dim=64",
    "decoder.embedding_dim=32",
    "decoder.dropout=0.0",
    "train.batch_size=8",
    "train.warmup_steps=5",
    "train.learning_rate=0.01",
    "loss.label_smoothing=0.0",
    "train.keep_best=1",
    "search.beam_size=1",
]

DECODER = ["decoder.hidden_dim=16", "decoder.embedding_dim=8", "decoder.dropout=0.0"]


def one_training_batch(overrides: list[str], folder):
    """A trainer on 8 items of a toy task, its one training batch, the batch's targets and
    the model's teacher-forced outputs on it (log-probs, attention, encoder output). On the
    CPU in float32, so that a test can recompute the training step's loss exactly."""
    config = load_config(None, overrides + ["data.num_train=8", "train.device=cpu"])
    run = Trainer(config, folder, progress=False, resume=False)
    (batch,) = run._train_batches(epoch=0)
    inputs, targets = teacher_forcing_pair([run.tokenizer.encode(t) for t in batch.texts])
    with torch.no_grad():
        outputs = run.model(batch.sources, batch.lengths, inputs)
    return run, batch, targets, outputs


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def end_epochs(run: Trainer, dev: list[dict[str, float]]) -> list[torch.Tensor]:
    """End one epoch per dev metrics dict of ``dev``, the model changed before each (its
    generator bias, returned per epoch), so that the kept checkpoints tell the epochs apart."""
    weights = []
    for metrics in dev:
        with torch.no_grad():
            run.model.generator.projection.bias.add_(1.0)
        weights.append(run.model.generator.projection.bias.clone().cpu())
        run._end_epoch(metrics)
    return weights
