"""The logic the peer benchmarks (``benchmarks/peers/``) share: text normalisation before WER,
the choice of recordings, alternating runs. Needs none of the peers."""

import importlib.util
from pathlib import Path

import pytest
import torch

PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"peer_benchmarks_{name}", PEERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = load("common")
table = load("table")


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("MARK IS GOING TO SEE ELEPHANT", "mark is going to see elephant"),
        ("two six four eight", "two six four eight"),
        ("call 911, now!", "call nine one one now"),
        ("room 2b", "room two b"),
        ("read(2) the  dora's book(3)", "read the dora's book"),
        ("well-known", "well known"),
        ("", ""),
    ],
)
def test_normalise_text(text, normalised):
    assert common.normalise_text(text) == normalised


def test_evenly_spaced_keeps_order_and_spreads():
    items = list(range(10))
    assert common.evenly_spaced(items, 0) == items
    assert common.evenly_spaced(items, 20) == items
    assert common.evenly_spaced(items, 5) == [0, 2, 4, 6, 8]
    assert common.evenly_spaced(items, 3) == [0, 3, 6]


def test_alternate_reverses_the_order_every_other_round():
    calls = []
    sides = {name: (lambda index, name=name: calls.append((index, name)) or name) for name in "ab"}
    seconds, outputs = common.alternate(sides, 3)
    assert calls == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    assert outputs == {"a": ["a"] * 3, "b": ["b"] * 3}
    assert all(len(times) == 3 and min(times) >= 0 for times in seconds.values())


def test_speed_ratio_and_spread_use_medians():
    assert common.speed_ratio([3.0, 9.0, 6.0], [1.0, 2.0, 3.0]) == 3.0
    assert common.spread([0.3, 0.1, 0.2])["median_s"] == 0.2
    assert common.spread([2.0], unit="")["median"] == 2.0


def test_a_missing_corpus_stops_with_its_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("FSDD_DIR", str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match="set FSDD_DIR"):
        common.corpus_folder("fsdd")


def test_in_precision_autocasts_only_for_bfloat16():
    def product(a):
        return a @ a

    matrix = torch.ones(4, 4)
    assert common.in_precision(product, "float32")(matrix).dtype == torch.float32
    assert common.in_precision(product, "bfloat16")(matrix).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        common.in_precision(product, "float16")


def test_table_names_the_precision_of_a_bfloat16_run():
    side = {"ms2s": {"median_s": 0.5}, "speechbrain": {"median_s": 1.5}, "ms2s_times_as_fast": 3.0}
    record = {
        "command": "beam",
        "machine": "cpu",
        "load_average_1min": 0.0,
        "date": "2026-12-07T00:00",
        "decoder_steps": 40,
        "by_threads": {"2": side},
    }
    (float32_row,) = table.rows(record)
    (bfloat16_row,) = table.rows({**record, "precision": "bfloat16"})
    assert float32_row.startswith("| beam search, 2 thread(s) |")
    assert bfloat16_row.startswith("| beam search in bfloat16, 2 thread(s) |")
    assert "**3.0x** (misses >= 5x)" in bfloat16_row
