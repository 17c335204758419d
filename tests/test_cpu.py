import warnings

import pytest
import torch
from conftest import DECODER, SEQUENCES, SMALL, SOURCE_SHAPES, tiny_model

from multimodal_s2s import cpu
from multimodal_s2s.config import load_config
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.search.decode import decode_batch
from multimodal_s2s.text import Tokenizer
from multimodal_s2s.training.train import train

FLAGS = "flags\t\t: fpu vme sse avx512f avx512_vnni"


@pytest.mark.parametrize(
    ("extra", "expected"), [(" avx512_bf16", True), (" amx_bf16 amx_tile", True), ("", False)]
)
def test_bfloat16_instructions_are_read_from_the_cpu_flags(tmp_path, extra, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{FLAGS}{extra}\nbugs\t\t: avx512_bf16_not\n")
    assert cpu.has_bfloat16_instructions(cpuinfo) is expected
    assert cpu.has_bfloat16_instructions(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("avx2 avx512f avx512_bf16 amx_bf16", "AMX-BF16"),
        ("avx2 avx512f avx512_bf16", "AVX512-BF16"),
        ("avx2 avx512f avx512_vnni", "AVX-512 without bfloat16"),
        ("fma avx avx2", "AVX2 without AVX-512"),
        ("sse4_2 avx", "without AVX2"),
    ],
)
def test_the_cpu_is_described_by_its_model_and_widest_vector_instructions(
    tmp_path, monkeypatch, flags, level
):
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu {flags}\n")
    assert cpu.describe_cpu(cpuinfo) == f"AMD EPYC (x86_64), 2 CPUs, {level}"
    assert cpu.describe_cpu(tmp_path / "missing") == "unknown processor (x86_64), 2 CPUs"


@pytest.fixture
def no_bfloat16_instructions(monkeypatch):
    monkeypatch.setattr(cpu, "has_bfloat16_instructions", lambda: False)


@pytest.mark.parametrize("known", [True, None])
def test_no_warning_unless_the_cpu_is_known_to_lack_bfloat16(monkeypatch, known):
    monkeypatch.setattr(cpu, "has_bfloat16_instructions", lambda: known)
    assert cpu.slow_bfloat16_warning("search.cpu_bfloat16") is None


def test_bfloat16_decoding_on_a_cpu_without_it_warns(no_bfloat16_instructions):
    model, _ = tiny_model(SOURCE_SHAPES["pblstm"] + DECODER)
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    sources, lengths = torch.randn(2, 12, 6), torch.tensor([12, 9])
    search = SearchConfig(beam_size=2, max_length=4, cpu_bfloat16=True)
    with pytest.warns(UserWarning, match=r"pass search.cpu_bfloat16=false$") as caught:
        decode_batch(model, tokenizer, sources, lengths, search)
    assert len(caught) == 1 and "no bfloat16 instructions" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 decoding: no warning
        decode_batch(model, tokenizer, sources, lengths, SearchConfig(beam_size=2, max_length=4))


def test_bfloat16_training_on_a_cpu_without_it_says_so(tmp_path, capsys, no_bfloat16_instructions):
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=4", "train.epochs=1"]
    train(load_config(None, [*overrides, "train.cpu_bfloat16=true", "train.device=cpu"]), tmp_path)
    assert "warning: train.cpu_bfloat16 is on, but this CPU" in capsys.readouterr().err
    train(load_config(None, [*overrides, "train.device=cpu"]), tmp_path / "float32")
    assert "warning" not in capsys.readouterr().err
