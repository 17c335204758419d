"""Write a speechocean762 ASR run's results.md in the table form of ESPnet's RESULTS.md.

    python recipes/speechocean762_asr/write_results.py --out EXP/results.md \
        --report beam8=EXP/eval_beam8 --report greedy=EXP/eval_greedy \
        --ages EXP/../test.jsonl --seconds data=60 --seconds train=1200 --seconds eval=120

Each ``--report NAME=FOLDER`` is a folder ``ms2s evaluate --report`` wrote: one
``<test set>.jsonl`` of per-utterance alignments (``hits``, ``substitutions``,
``deletions``, ``insertions``) per test set, and ``results.json`` (``decode_seconds``).
``--ages`` manifests give each recording's speaker age, so the ``test`` WER is also split
into children (under 18) and adults.
"""

import argparse
import json
import sys
from pathlib import Path

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.cpu import describe_cpu
from multimodal_s2s.data.manifest import ADULT_AGE, read_manifest
from multimodal_s2s.errors import InputError

COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def error_counts(records: list[dict]) -> dict[str, float]:
    """ESPnet's columns for one set of aligned utterances: ``Snt`` and ``Wrd`` are counts,
    the others percentages of the reference words (``S.Err``: of the sentences)."""
    words = sum(r["hits"] + r["substitutions"] + r["deletions"] for r in records)
    errors = {key: sum(r[key] for r in records) for key in ("substitutions", "deletions")}
    insertions = sum(r["insertions"] for r in records)
    wrong = sum(1 for r in records if r["substitutions"] + r["deletions"] + r["insertions"])
    hits = sum(r["hits"] for r in records)
    percent = 100.0 / max(words, 1)
    return {
        "Snt": len(records),
        "Wrd": words,
        "Corr": hits * percent,
        "Sub": errors["substitutions"] * percent,
        "Del": errors["deletions"] * percent,
        "Ins": insertions * percent,
        "Err": (errors["substitutions"] + errors["deletions"] + insertions) * percent,
        "S.Err": 100.0 * wrong / max(len(records), 1),
    }


def results_markdown(
    reports: dict[str, Path], ages: dict[str, int], seconds: dict[str, float]
) -> str:
    """The whole results.md: the ESPnet table, WER by age group, decoding time, stage times."""
    table = ["|dataset|" + "|".join(COLUMNS) + "|", "|---" * (len(COLUMNS) + 1) + "|"]
    by_age = ["|decoding|children|adults|", "|---|---:|---:|"]
    for name, folder in reports.items():
        for split in sorted(p.stem for p in folder.glob("*.jsonl")):
            records = _read_records(folder / f"{split}.jsonl")
            row = error_counts(records)
            cells = [f"{row[c]}" if c in ("Snt", "Wrd") else f"{row[c]:.1f}" for c in COLUMNS]
            table.append(f"|decode_{name}/{split}|" + "|".join(cells) + "|")
            if split == "test" and ages:
                groups = _by_age(records, ages)
                by_age.append(f"|{name}|{groups['children']:.1f}|{groups['adults']:.1f}|")
    total = sum(seconds.values())
    stages = ", ".join(f"{stage} {value / 60:.1f} min" for stage, value in seconds.items())
    lines = [
        "# speechocean762 ASR results",
        "",
        "Word error counts in percent of the reference words (ESPnet's RESULTS.md columns).",
        "",
        *table,
        "",
        "WER (%) on `test` by speaker age (children: under 18):",
        "",
        *by_age,
        "",
        f"Total {total / 60:.1f} min ({stages}); {describe_cpu()}.",
    ]
    return "\n".join(lines) + "\n"


def _by_age(records: list[dict], ages: dict[str, int]) -> dict[str, float]:
    groups: dict[str, list[dict]] = {"children": [], "adults": []}
    for record in records:
        if record["key"] not in ages:
            raise InputError(f"{record['key']}: no speaker age in the --ages manifests")
        groups["adults" if ages[record["key"]] >= ADULT_AGE else "children"].append(record)
    return {group: error_counts(rs)["Err"] for group, rs in groups.items()}


def _read_records(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _named(value: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> ``(NAME, VALUE)`` for argparse (an error names the bad value)."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="append", default=[], type=_named, help="NAME=DIR")
    parser.add_argument("--ages", action="append", default=[], type=Path, help="manifest")
    parser.add_argument("--seconds", action="append", default=[], type=_named, help="STAGE=S")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        reports = {name: Path(folder) for name, folder in args.report}
        seconds = {stage: float(value) for stage, value in args.seconds}
        ages = {r["audio"]: r["age"] for path in args.ages for r in read_manifest(path)}
        text = results_markdown(reports, ages, seconds)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with atomic_write(args.out) as file:
        file.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
