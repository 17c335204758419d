"""What the peer benchmarks share: running in the peers' venv, alternating timed runs, the
record printed with the numbers, and the text normalisation and recording selection of the
transcription benchmark.

Importing this module puts this checkout (and ``benchmarks/``) first on ``sys.path``, so the
scripts time the code they sit in whichever venv runs them. It imports no peer itself: the
project's tests import it from the project's venv.
"""

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for folder in (HERE.parent, ROOT):  # machine.py, then this checkout's multimodal_s2s
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from machine import describe  # noqa: E402

from multimodal_s2s.data.manifest import DIGIT_WORDS  # noqa: E402

PEERS_VENV = Path(os.environ.get("MS2S_PEERS_VENV", Path.home() / ".venvs" / "ms2s-peers"))
_REEXECUTED = "MS2S_PEERS_REEXECUTED"


def run_in_peers_venv(*modules: str) -> None:
    """Return when every one of ``modules`` imports here; otherwise set up the peers' venv
    (``setup_peers.sh``, a no-op once done) and run this script again in it, same arguments."""
    if all(importlib.util.find_spec(module) for module in modules):
        return
    if os.environ.get(_REEXECUTED):
        raise SystemExit(f"{', '.join(modules)}: not importable in {sys.executable}")
    subprocess.run(["bash", str(HERE / "setup_peers.sh")], check=True)
    python = PEERS_VENV / "bin" / "python"
    os.environ[_REEXECUTED] = "1"
    os.execv(python, [str(python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def add_common_arguments(parser: argparse.ArgumentParser, threads: Sequence[int]) -> None:
    """``--threads`` (intra-op thread counts, each timed), ``--repeats``, ``--seed`` and
    ``--output`` (a JSON file besides the line on stdout)."""
    parser.add_argument("--threads", type=int, nargs="+", default=list(threads))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the result as JSON here")
    parser.add_argument(
        "--profile", type=Path, help="after timing, write each side's torch.profiler table here"
    )


def with_threads(threads: int, run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` with ``torch.set_num_threads(threads)`` before each call."""

    def threaded(*args: Any) -> Any:
        torch.set_num_threads(threads)
        return run(*args)

    return threaded


def in_precision(run: Callable[..., Any], precision: str) -> Callable[..., Any]:
    """``run`` under CPU bfloat16 autocast for ``precision`` ``bfloat16`` (what the
    ``cpu_bfloat16`` settings do inside ``ms2s``), as it is for ``float32``."""
    if precision == "float32":
        return run
    if precision != "bfloat16":
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")

    def autocast_run(*args: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run(*args)

    return autocast_run


def alternate(
    sides: dict[str, Callable[[int], Any]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Call every side once per round with the round's index, in the order given in even
    rounds and reversed in odd ones, so that a drift of the machine's speed affects all
    sides alike. Returns each side's seconds and outputs, one per round."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, list[Any]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            outputs[name].append(sides[name](index))
            seconds[name].append(time.perf_counter() - start)
    return seconds, outputs


def profile(sides: dict[str, Callable[[int], Any]], path: Path, rows: int = 30) -> None:
    """Run each side once more (round 0) under ``torch.profiler`` and write its operators,
    the most self CPU time first, to ``path``: what bounds a side's time."""
    with path.open("w") as out:
        for name, side in sides.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as run:
                side(0)
            table = run.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
            out.write(f"== {name}\n{table}\n")


def spread(values: list[float], unit: str = "_s") -> dict[str, Any]:
    """Median, smallest and largest of a side's runs (seconds unless ``unit`` says
    otherwise, rounded), and the runs."""
    return {
        f"median{unit}": round(statistics.median(values), 4),
        f"min{unit}": round(min(values), 4),
        f"max{unit}": round(max(values), 4),
        f"runs{unit}": [round(value, 4) for value in values],
    }


def speed_ratio(peer: list[float], ours: list[float]) -> float:
    """How many times as fast this project's side is: the peer's median over ours."""
    return round(statistics.median(peer) / statistics.median(ours), 2)


def report(result: dict[str, Any], output: Path | None, peers: Sequence[str]) -> None:
    """Print ``result`` as one JSON line with the machine (its processor and vector
    instructions, load, torch), the peers' versions, the date and the command, and write
    it to ``output`` when given."""
    record = {
        **result,
        **describe(torch.device("cpu")),
        "peers": {name: version(name) for name in peers},
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
    }
    line = json.dumps(record)
    print(line)
    if output is not None:
        output.write_text(json.dumps(record, indent=2) + "\n")


CORPORA = {  # name: (its variable, where a user gets it)
    "speechocean762": ("SPEECHOCEAN762_DIR", "https://www.openslr.org/101/"),
    "fsdd": ("FSDD_DIR", "https://github.com/Jakobovski/free-spoken-digit-dataset"),
}


def corpus_folder(name: str) -> Path:
    """A corpus's folder: its variable (``CORPORA``), else ``../shared/corpora/<name>``
    beside this checkout, as the recipes find it; a one-line exit when it is missing."""
    variable, source = CORPORA[name]
    folder = Path(os.environ.get(variable, ROOT.parent / "shared" / "corpora" / name))
    if not folder.is_dir():
        raise SystemExit(f"{name} not found in {folder}: get it from {source}, set {variable}")
    return folder


def normalise_text(text: str) -> str:
    """A transcript as the corpora's references are written, for comparing systems: lower
    case, each digit as its word ("7" -> "seven"; the references spell numbers digit by
    digit), pronunciation-variant marks ("read(2)") and punctuation other than apostrophes
    dropped, single spaces."""
    text = re.sub(r"\(\d+\)", " ", text.lower())
    text = re.sub(r"\d", lambda digit: f" {DIGIT_WORDS[int(digit.group())]} ", text)
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


def evenly_spaced(items: Sequence[Any], limit: int) -> list[Any]:
    """``limit`` items spread evenly over ``items`` (all of them when ``limit`` is 0 or at
    least their number), in order: a sorted corpus keeps its mix of speakers and words."""
    if limit <= 0 or limit >= len(items):
        return list(items)
    return [items[index * len(items) // limit] for index in range(limit)]
