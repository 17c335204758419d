"""The logic the peer benchmarks (``benchmarks/peers/``) share: text normalisation before WER,
the choice of recordings, alternating runs. Needs none of the peers."""

import importlib.util
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "common.py"
spec = importlib.util.spec_from_file_location("peer_benchmarks_common", COMMON)
common = importlib.util.module_from_spec(spec)
spec.loader.exec_module(common)


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
