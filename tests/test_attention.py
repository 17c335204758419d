import pytest
import torch

from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.attention import ATTENTIONS, dot_tanh_

QUERY, MEMORY = 6, 6


def _attention(name: str, **options):
    attention_class, config_class = ATTENTIONS[name]
    config = config_class(**options)
    return attention_class(config, QUERY, MEMORY).double()


def _inputs(batch=2, length=5):
    memory = torch.randn(batch, length, MEMORY, dtype=torch.float64, requires_grad=True)
    query = torch.randn(batch, QUERY, dtype=torch.float64, requires_grad=True)
    previous = torch.softmax(torch.randn(batch, length, dtype=torch.float64), -1)
    mask = padding_mask(torch.tensor([length, length - 2]), length)
    return query, memory, previous.masked_fill(mask, 0.0).requires_grad_(), mask


def test_padding_mask_marks_positions_at_or_past_length():
    mask = padding_mask(torch.tensor([3, 1, 4]), 5)
    assert mask.tolist() == [
        [False, False, False, True, True],
        [False, True, True, True, True],
        [False, False, False, False, True],
    ]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("dot", {}),
        ("general", {}),
        ("additive", {"dim": 4}),
        ("additive", {"dim": 4, "gate": True}),
        ("location", {"dim": 4, "channels": 2, "kernel_size": 3}),
    ],
)
def test_gradcheck_float64(name, options):
    attention = _attention(name, **options)
    query, memory, previous, mask = _inputs()

    def run(q, m, p):
        context, weights = attention(q, m, attention.prepare(m), mask, p)
        return context, weights

    assert torch.autograd.gradcheck(run, (query, memory, previous))


def test_dot_tanh_equals_the_dot_product_with_tanh_including_saturation():
    hidden = torch.cat([torch.randn(3, 7, 16, dtype=torch.float64), torch.full((1, 7, 16), 40.0)])
    hidden[0, 0] = -40.0
    weight = torch.randn(1, 16, dtype=torch.float64)
    expected = torch.tanh(hidden) @ weight.T
    torch.testing.assert_close(dot_tanh_(hidden.clone(), weight), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dot_tanh_keeps_tanh_in_half_precision(dtype):
    hidden = torch.randn(4, 7, 16).to(dtype)
    weight = torch.randn(1, 16).to(dtype)
    expected = torch.nn.functional.linear(torch.tanh(hidden), weight)
    assert torch.equal(dot_tanh_(hidden.clone(), weight), expected)


def test_additive_attention_scores_are_bahdanaus_formula():
    attention = _attention("additive", dim=4)
    query, memory, previous, mask = _inputs()
    _, weights = attention(query, memory, attention.prepare(memory), mask, previous)
    hidden = attention.query_projection(query).unsqueeze(1) + attention.memory_projection(memory)
    energy = (torch.tanh(hidden) @ attention.energy.weight.T).squeeze(2)
    expected = torch.softmax(energy.masked_fill(mask, float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_weights_are_zero_on_padding_and_sum_to_one(name):
    attention = _attention(name)
    query, memory, previous, mask = _inputs()
    _, weights = attention(query, memory, attention.prepare(memory), mask, previous)
    assert torch.all(weights.masked_select(mask) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_padding_content_never_reaches_the_context(name):
    attention = _attention(name)
    query, memory, previous, mask = _inputs()
    noisy = memory.detach().clone()
    noisy[1, 3:] = 1e3
    clean_context, _ = attention(query, memory, attention.prepare(memory), mask, previous)
    noisy_context, _ = attention(query, noisy, attention.prepare(noisy), mask, previous)
    torch.testing.assert_close(noisy_context[1], clean_context[1])


def test_location_attention_depends_on_previous_weights():
    attention = _attention("location", dim=4, channels=3, kernel_size=3)
    query, memory, previous, mask = _inputs()
    keys = attention.prepare(memory)
    _, first = attention(query, memory, keys, mask, previous)
    _, second = attention(query, memory, keys, mask, previous.roll(1, dims=1))
    assert not torch.allclose(first, second)


def test_dot_attention_requires_matching_sizes():
    attention_class, config_class = ATTENTIONS["dot"]
    with pytest.raises(ValueError, match="decoder.hidden_dim"):
        attention_class(config_class(), 8, 6)


@pytest.mark.parametrize("init", ["zeros", "first"])
def test_first_step_previous_attention_follows_init_attention(init):
    from multimodal_s2s.models.decoder import AttentionDecoder, DecoderConfig
    from multimodal_s2s.models.encoders.base import EncoderOutput

    decoder = AttentionDecoder(DecoderConfig(hidden_dim=8, init_attention=init), 7, MEMORY)
    memory = torch.randn(2, 5, MEMORY)
    _, state = decoder.start(EncoderOutput(memory, torch.tensor([5, 3])))
    expected = torch.zeros(2, 5)
    if init == "first":
        expected[:, 0] = 1.0
    assert torch.equal(state.weights, expected) and torch.equal(state.coverage, torch.zeros(2, 5))
