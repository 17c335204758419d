"""Collect a phone-menu ASR run into one results table: WER/CER per test set for each
decoding, the real-time factor (decode seconds / audio seconds), and the stage timings.

    python recipes/phone_menu_asr/summarize.py --model EXP/best.pt \
        --report beam8=EXP/eval_beam8 --report greedy=EXP/eval_greedy \
        --seconds data=200 --seconds train=700 --seconds eval=120 --out EXP/results.md

Each ``--report NAME=FOLDER`` is the ``results.json`` folder ``ms2s evaluate --report`` wrote.
The audio length of a split comes from the manifest the checkpoint's config names.
"""

import argparse
import json
import os
from pathlib import Path

from multimodal_s2s.checkpoint import load_checkpoint, saved_config
from multimodal_s2s.cpu import describe_cpu
from multimodal_s2s.data.speech import SpeechData
from multimodal_s2s.errors import InputError


def summarize(model: Path, reports: dict[str, Path], seconds: dict[str, float]) -> tuple[str, dict]:
    """The Markdown results table and the same numbers as a dict."""
    data = SpeechData(saved_config(load_checkpoint(model)).data)
    results = {name: _read_results(folder) for name, folder in reports.items()}
    rows = [
        "| decoding | test set | utterances | WER | CER | RTF |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, splits in results.items():
        for split, metrics in splits.items():
            metrics["rtf"] = metrics["decode_seconds"] / data.audio_seconds(split)
            rows.append(
                f"| {name} | {split} | {metrics['items']} | {100 * metrics['wer']:.2f}% "
                f"| {100 * metrics['cer']:.2f}% | {metrics['rtf']:.4f} |"
            )
    total = sum(seconds.values())
    timing = ", ".join(f"{stage} {value / 60:.1f} min" for stage, value in seconds.items())
    machine = f"{describe_cpu()}, load {_load()}"
    lines = [*rows, "", f"Total {total / 60:.1f} min ({timing}); {machine}."]
    return "\n".join(lines) + "\n", {"results": results, "seconds": seconds}


def _read_results(folder: Path) -> dict[str, dict[str, float]]:
    path = folder / "results.json"
    if not path.is_file():
        raise InputError(f"{path}: no results.json (run ms2s evaluate --report {folder})")
    return json.loads(path.read_text())


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"{flag} {value!r} is not of the form NAME=VALUE")
        pairs[name] = rest
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", action="append", default=[], help="NAME=FOLDER")
    parser.add_argument("--seconds", action="append", default=[], help="STAGE=SECONDS")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file (+ .json)")
    args = parser.parse_args()
    reports = {name: Path(folder) for name, folder in _pairs(args.report, "--report").items()}
    seconds = {name: float(value) for name, value in _pairs(args.seconds, "--seconds").items()}
    table, numbers = summarize(args.model, reports, seconds)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(table, end="")


if __name__ == "__main__":
    main()
