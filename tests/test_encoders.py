import copy

import pytest
import torch
from torch.nn import functional
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from multimodal_s2s import cpu
from multimodal_s2s.config import load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.encoders import ENCODERS, grid
from multimodal_s2s.models.encoders.cnn import CNNConfig, CNNEncoder
from multimodal_s2s.models.encoders.pblstm import (
    BLSTMLayer,
    ConvPBLSTMConfig,
    PBLSTMConfig,
    PyramidalBLSTMEncoder,
)
from multimodal_s2s.models.encoders.resnet import ResNetConfig, ResNetEncoder


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("output_dim", [None, 12])
def test_pblstm_shapes_follow_config(layers, output_dim):
    config = PBLSTMConfig(input_dim=5, hidden_dim=7, num_layers=layers, output_dim=output_dim)
    encoder = PyramidalBLSTMEncoder(config).eval()
    lengths = torch.tensor([37, 29, 16])
    out = encoder(torch.randn(3, 37, 5), lengths)
    dim = output_dim or 2 * 7
    assert encoder.output_dim == dim
    assert out.memory.shape == (3, 37 // 2**layers, dim)
    assert out.lengths.tolist() == [37 // 2**layers, 29 // 2**layers, 16 // 2**layers]
    assert out.lengths.dtype == torch.int64


def test_conv_pblstm_halves_frames_and_bins_rounding_up_before_the_pyramid():
    config = ConvPBLSTMConfig(
        input_dim=9, hidden_dim=7, num_layers=1, ctc_layer=0, conv_channels=[4, 3]
    )
    encoder = PyramidalBLSTMEncoder(config).eval()
    assert encoder.convolution.output_dim == 3 * 3  # 9 bins -> 5 -> 3, times 3 channels
    out = encoder(torch.randn(3, 37, 9), torch.tensor([37, 29, 16]))
    assert out.auxiliary.memory.shape == (3, 10, 14)  # 37 frames -> 19 -> 10
    assert out.auxiliary.lengths.tolist() == [10, 8, 4]
    assert out.memory.shape == (3, 5, 14)
    assert out.lengths.tolist() == [5, 4, 2]


def test_conv_pblstm_is_the_pblstm_with_two_convolution_blocks():
    config = load_config(None, ["encoder.name=conv_pblstm"]).encoder
    assert config.conv_channels == [32, 32]
    assert PBLSTMConfig().conv_channels == []
    with pytest.raises(InputError, match="encoder.conv_channels must be positive"):
        load_config(None, ["encoder.name=conv_pblstm", "encoder.conv_channels=[8, 0]"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("conv_channels", "layers", "frames"), [([], 2, 3), ([3, 2], 1, 2)])
def test_pblstm_padding_never_changes_memory(dtype, conv_channels, layers, frames):
    config = PBLSTMConfig(input_dim=4, hidden_dim=6, num_layers=layers, conv_channels=conv_channels)
    encoder = PyramidalBLSTMEncoder(config).to(dtype).eval()
    short = torch.randn(1, 13, 4, dtype=dtype)
    alone = encoder(short, torch.tensor([13]))
    batch = torch.randn(3, 30, 4, dtype=dtype)
    batch[1, :13] = short[0]
    batch[1, 13:] = 100.0  # garbage in the padding must not leak
    together = encoder(batch, torch.tensor([30, 13, 22]))
    assert together.lengths[1] == alone.lengths[0] == frames
    torch.testing.assert_close(together.memory[1, :frames], alone.memory[0], atol=1e-5, rtol=0)
    assert torch.all(together.memory[1, frames:] == 0)


def test_blstm_layer_equals_a_packed_bidirectional_lstm():
    torch.manual_seed(0)
    layer = BLSTMLayer(4, 6).double()
    reference = torch.nn.LSTM(4, 6, batch_first=True, bidirectional=True).double()
    for name, value in layer.forward_lstm.named_parameters():
        getattr(reference, name).data.copy_(value)
    for name, value in layer.backward_lstm.named_parameters():
        getattr(reference, f"{name}_reverse").data.copy_(value)
    inputs = torch.randn(3, 11, 4, dtype=torch.float64)
    lengths = torch.tensor([7, 11, 2])
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=11)
    torch.testing.assert_close(layer(inputs, lengths), expected, atol=1e-12, rtol=0)


def test_blstm_layer_runs_float32_under_bfloat16_autocast_on_a_cpu_without_bfloat16(monkeypatch):
    """PyTorch 2.11's bfloat16 LSTM needs oneDNN's bfloat16 primitive, which a CPU without
    bfloat16 instructions lacks; there the layer computes in float32 and rounds its output
    to bfloat16, as autocast returns it."""
    monkeypatch.setattr(cpu, "has_bfloat16_instructions", lambda: False)
    torch.manual_seed(0)
    layer = BLSTMLayer(4, 6)
    inputs, lengths = torch.randn(3, 11, 4), torch.tensor([7, 11, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = layer(inputs.to(torch.bfloat16), lengths)
        output.float().sum().backward()
    assert output.dtype == torch.bfloat16
    assert torch.equal(output, layer(inputs.to(torch.bfloat16).float(), lengths).to(torch.bfloat16))
    assert layer.forward_lstm.weight_ih_l0.grad.dtype == torch.float32


def test_pblstm_rejects_too_short_inputs():
    encoder = PyramidalBLSTMEncoder(PBLSTMConfig(input_dim=4, hidden_dim=6, num_layers=3))
    with pytest.raises(ValueError, match="at least 8 input frames"):
        encoder(torch.randn(1, 7, 4), torch.tensor([7]))


@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 24), (17, 50)])
@pytest.mark.parametrize("pooled", [None, 2, 0])
def test_cnn_grid_is_flattened_to_memory(height, width, pooled):
    config = CNNConfig(channels=[4, 8, 16], pooled_blocks=pooled, output_dim=10)
    encoder = CNNEncoder(config).eval()
    out = encoder(torch.randn(2, 3, height, width))
    stride = 2 ** (3 if pooled is None else pooled)
    grid = (height // stride, width // stride)
    assert encoder.grid_size(height, width) == grid
    assert out.memory.shape == (2, grid[0] * grid[1], 10)
    assert out.lengths.tolist() == [grid[0] * grid[1]] * 2


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_image_encoders_append_grid_coordinates(name):
    encoder_class, config_class = ENCODERS[name]
    shape = {"channels": [4, 8]} if name == "cnn" else {"trunk_layers": 1}
    plain = encoder_class(config_class(**shape)).eval()
    encoder = encoder_class(config_class(**shape, coordinates=True)).eval()
    encoder.load_state_dict(plain.state_dict())  # no projection: the same trunk weights
    images = torch.randn(2, 3, 24, 16)
    memory = encoder(images).memory
    grid = encoder.grid_size(24, 16)
    assert encoder.output_dim == plain.output_dim + 2 == memory.size(2)
    torch.testing.assert_close(memory[..., :-2], plain(images).memory)
    rows, columns = memory[0, :, -2].view(grid), memory[0, :, -1].view(grid)
    assert rows[:, 0].tolist() == torch.linspace(-1, 1, grid[0]).tolist()
    assert columns[0].tolist() == torch.linspace(-1, 1, grid[1]).tolist()
    assert torch.all(rows == rows[:, :1]) and torch.all(columns == columns[:1])
    assert torch.equal(memory[1, :, -2:], memory[0, :, -2:])
    projected = encoder_class(config_class(**shape, coordinates=True, output_dim=5))
    assert projected.head.projection.in_features == plain.output_dim + 2


def test_cnn_input_coordinates_feed_each_pixels_row_and_column_to_the_first_conv():
    encoder = CNNEncoder(CNNConfig(channels=[4, 8], input_coordinates=True)).eval()
    first_conv = encoder.trunk[0]
    assert first_conv.in_channels == 5
    seen = []
    encoder.trunk.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    images = torch.randn(2, 3, 12, 20)
    memory = encoder(images).memory
    assert memory.shape == (2, 3 * 5, 8)
    fed = seen[0]
    torch.testing.assert_close(fed[:, :3], images)
    rows, columns = torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 20)
    torch.testing.assert_close(fed[:, 3], rows.view(12, 1).expand(2, 12, 20))
    torch.testing.assert_close(fed[:, 4], columns.view(1, 20).expand(2, 12, 20))
    with torch.no_grad():
        first_conv.weight[:, :3] = 0.0  # only the coordinates are left to see
    blank = encoder(torch.zeros(1, 3, 12, 20)).memory[0]
    torch.testing.assert_close(encoder(images).memory, blank.expand(2, -1, -1))
    assert not torch.allclose(blank[6], blank[7])  # interior cells differ by position alone


def test_cnn_eval_folds_batch_norm_into_the_convolutions_without_changing_outputs():
    torch.manual_seed(0)
    encoder = CNNEncoder(CNNConfig(channels=[4, 8, 16], output_dim=6))
    for _ in range(3):  # running statistics away from their initial values
        encoder(torch.randn(8, 3, 16, 16) * 2 + 1)
    for norm in encoder.trunk:
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.weight.data.uniform_(0.5, 2.0)
            norm.bias.data.normal_()
    encoder.eval()
    images = torch.randn(4, 3, 16, 16)
    calls = []
    hooks = [
        norm.register_forward_hook(lambda *args: calls.append(1))
        for norm in encoder.trunk
        if isinstance(norm, torch.nn.BatchNorm2d)
    ]
    folded = encoder(images).memory
    assert not calls  # no batch-norm layer ran: all three were folded
    unfolded = encoder.head(torch.nn.Sequential.forward(encoder.trunk, images)).memory
    assert len(calls) == 3
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)
    folded.sum().backward()  # still differentiable, e.g. for saliency in eval mode
    assert encoder.trunk[0].weight.grad.abs().sum() > 0
    for hook in hooks:
        hook.remove()
    encoder.train()
    encoder(images)
    assert len(calls) == 3  # training mode runs the norms on batch statistics


@pytest.mark.parametrize("size", [(16, 16), (9, 14), (7, 5)])
def test_cnn_eval_pools_before_the_relu_with_the_same_values(size):
    features = torch.randn(3, 5, *size).contiguous(memory_format=torch.channels_last)
    expected = functional.max_pool2d(torch.relu(features), 2)
    assert torch.equal(grid.max_pool_2x2_relu(features), expected)
    encoder = CNNEncoder(CNNConfig(channels=[4, 8])).eval()
    ran = []
    for layer in encoder.trunk:
        layer.register_forward_hook(lambda module, *args: ran.append(type(module).__name__))
    images = torch.randn(2, 3, 4 * size[0], 4 * size[1])
    with torch.no_grad():
        fast, plain = encoder.trunk(images), torch.nn.Sequential.forward(encoder.trunk, images)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-6)  # the norm folded in
    assert ran == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2  # only the plain pass


def test_cnn_eval_encodes_large_cpu_batches_in_chunks_with_unchanged_outputs(monkeypatch):
    torch.manual_seed(0)
    encoder = CNNEncoder(CNNConfig(channels=[4, 8], output_dim=6)).eval()
    encoder.trunk.EVAL_CHUNK_BYTES = 3 * 4 * 16 * 16 * 4  # three images' first activation
    sizes = []
    pool = grid.max_pool_2x2_relu  # eval mode's steps are functions, not hooked modules

    def counted_pool(features):
        if features.size(1) == 4:  # the first block
            sizes.append(len(features))
        return pool(features)

    monkeypatch.setattr(grid, "max_pool_2x2_relu", counted_pool)
    images = torch.randn(8, 3, 16, 16)
    memory = encoder(images).memory
    assert sizes == [3, 3, 2]
    encoder.trunk.EVAL_CHUNK_BYTES = 2**40
    whole = encoder(images).memory
    assert sizes[3:] == [8]
    torch.testing.assert_close(memory, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(memory[5], encoder(images[5:6]).memory[0], atol=1e-6, rtol=1e-6)
    sizes.clear()
    encoder.trunk[2].register_forward_pre_hook(lambda module, inputs: sizes.append(len(inputs[0])))
    encoder.train()(images)
    assert sizes == [8]  # training keeps the whole batch: batch-norm statistics


def test_cnn_pooled_blocks_out_of_range_is_named():
    with pytest.raises(InputError, match=r"encoder.pooled_blocks must be between 0 and .* \(2\)"):
        CNNConfig(channels=[4, 8], pooled_blocks=3)


@pytest.mark.parametrize(("layers", "channels"), [(1, 64), (2, 128), (4, 512)])
def test_resnet_grid_and_width(layers, channels):
    encoder = ResNetEncoder(ResNetConfig(depth=18, trunk_layers=layers)).eval()
    out = encoder(torch.randn(1, 3, 64, 48))
    grid = encoder.grid_size(64, 48)
    stride = 2 ** (layers + 1)
    assert grid == (-(-64 // stride), -(-48 // stride))  # each stride-2 stage rounds up
    assert out.memory.shape == (1, grid[0] * grid[1], channels)


@pytest.mark.parametrize("self_attention_layers", [0, 1])
@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_image_encoders_are_batch_invariant(name, self_attention_layers):
    encoder_class, config_class = ENCODERS[name]
    config = config_class(
        **({"channels": [4, 8]} if name == "cnn" else {"trunk_layers": 2}),
        output_dim=8,
        self_attention_layers=self_attention_layers,
    )
    encoder = encoder_class(config).eval()
    images = torch.randn(3, 3, 32, 32)
    alone = encoder(images[1:2]).memory
    together = encoder(images).memory
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_cnn_self_attention_lets_every_position_see_the_whole_image(layers):
    torch.manual_seed(0)
    config = CNNConfig(channels=[4, 8, 8, 8], output_dim=8, self_attention_layers=layers)
    encoder = CNNEncoder(config).eval()
    images = torch.randn(1, 3, 64, 64)
    changed = images.clone()
    changed[:, :, :8, :8] += 3.0  # the top-left corner, out of the last cell's receptive field
    before, after = encoder(images).memory, encoder(changed).memory
    assert before.shape == (1, 16, 8)
    assert len(list(encoder.head.parameters())) == 2 + 12 * layers
    bottom_right_moved = not torch.allclose(before[0, -1], after[0, -1], atol=1e-6, rtol=0)
    assert bottom_right_moved == (layers > 0)


@pytest.mark.parametrize(
    ("layers", "output_dim", "message"),
    [
        (-1, 8, "encoder.self_attention_layers must be >= 0, got -1"),
        (1, 6, "a memory width divisible by 4 heads, got 6"),
    ],
)
def test_cnn_bad_self_attention_settings_are_named(layers, output_dim, message):
    config = CNNConfig(channels=[4], output_dim=output_dim, self_attention_layers=layers)
    with pytest.raises(InputError, match=message):
        CNNEncoder(config)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_image_trunks_run_channels_last_with_the_same_values(name):
    encoder_class, config_class = ENCODERS[name]
    config = config_class(**({"channels": [4, 8]} if name == "cnn" else {"trunk_layers": 2}))
    encoder = encoder_class(config).eval()
    contiguous = {key: value.contiguous() for key, value in encoder.state_dict().items()}
    encoder.load_state_dict(contiguous)  # e.g. a checkpoint saved in the default layout
    weights = [p for p in encoder.trunk.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    images = torch.randn(2, 3, 32, 32)
    plain = copy.deepcopy(torch.nn.Sequential(*encoder.trunk)).to(
        memory_format=torch.contiguous_format
    )
    expected = plain(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(encoder(images).memory, expected, atol=1e-5, rtol=1e-5)


def test_resnet_freeze_stops_gradients_and_keeps_batchnorm_fixed():
    encoder = ResNetEncoder(ResNetConfig(trunk_layers=1, freeze=True, output_dim=8)).train()
    running = encoder.trunk[1].running_mean.clone()
    encoder(torch.randn(2, 3, 32, 32)).memory.sum().backward()
    assert all(p.grad is None for p in encoder.trunk.parameters())
    assert torch.equal(encoder.trunk[1].running_mean, running)
    encoder.set_frozen(False)
    encoder.train()
    encoder(torch.randn(2, 3, 32, 32)).memory.sum().backward()
    assert all(p.grad is not None for p in encoder.trunk.parameters())
    assert not torch.equal(encoder.trunk[1].running_mean, running)


def test_resnet_loads_local_weights_and_names_bad_files(tmp_path):
    source = ResNetEncoder(ResNetConfig(depth=18, trunk_layers=1))
    import torchvision

    full = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(full.state_dict(), path)
    loaded = ResNetEncoder(ResNetConfig(depth=18, trunk_layers=1, weights_path=str(path)))
    assert torch.equal(loaded.trunk[0].weight, full.conv1.weight)
    assert not torch.equal(source.trunk[0].weight, full.conv1.weight)
    with pytest.raises(InputError, match="missing.pt"):
        ResNetEncoder(ResNetConfig(weights_path=str(tmp_path / "missing.pt")))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        ResNetEncoder(ResNetConfig(weights_path=str(bad)))


def test_every_registered_encoder_is_buildable_by_name():
    for name, (encoder_class, _) in ENCODERS.items():
        config = load_config(None, [f"encoder.name={name}"])
        assert isinstance(config.encoder, ENCODERS[name][1])
        assert encoder_class(config.encoder).output_dim > 0
