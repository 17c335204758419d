"""Collect a finished recipe run into ``RUN/results.json`` and a Markdown table ``RUN/results.md``.

Reads ``RUN/report/results.json`` (``ms2s evaluate --report``: every split it scored; each
independently composited split is also set against its own), ``RUN/throughput.json``
(``benchmarks/caption_throughput.py``) and ``RUN/timings.tsv`` (``name<TAB>start<TAB>end``
per step, written by ``run.sh``). Usage: ``python write_results.py RUN``.
"""

import json
import os
import sys
from datetime import date
from pathlib import Path

from multimodal_s2s.cpu import describe_cpu

METRICS = ("object_accuracy", "relation_accuracy", "bleu4", "cider_d", "exact_match", "wer")


def main(run: Path) -> None:
    evaluation = json.loads((run / "report" / "results.json").read_text())
    throughput = json.loads((run / "throughput.json").read_text())
    seconds = _step_seconds(run / "timings.tsv")
    results = {
        "date": date.today().isoformat(),
        "machine": describe_cpu(),
        "load_average_1_5_15min": os.getloadavg(),
        "splits": evaluation,
        "throughput": throughput,
        "seconds": {**seconds, "total": sum(seconds.values())},
    }
    (run / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = _markdown(results)
    (run / "results.md").write_text(markdown)
    print(markdown, end="")


def _step_seconds(path: Path) -> dict[str, float]:
    seconds = {}
    for line in path.read_text().splitlines():
        name, start, end = line.split("\t")
        seconds[name] = seconds.get(name, 0.0) + float(end) - float(start)
    return seconds


def _markdown(results: dict) -> str:
    lines = [
        f"# Scene captioning results ({results['date']}, {results['machine']}, "
        f"load {' / '.join(f'{x:.2f}' for x in results['load_average_1_5_15min'])})",
        "",
        "| split | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for split, metrics in results["splits"].items():
        lines.append(f"| {split} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    lines += _gaps(results["splits"])
    speed = results["throughput"]
    lines += [
        "",
        f"Captioning, beam {speed['beam']}, {speed['images']} images, {speed['threads']} "
        f"thread(s): batched ({speed['batch_size']} per batch) "
        f"{speed['batched_images_per_s']:.1f} images/s, one at a time "
        f"{speed['one_at_a_time_images_per_s']:.1f} images/s, "
        f"ratio {speed['speedup']:.1f}x (same captions: {speed['same_captions']}).",
        "",
        "Wall-clock seconds: "
        + ", ".join(f"{name} {value:.0f}" for name, value in results["seconds"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _gaps(splits: dict) -> list[str]:
    """Lines on how much each independently composited split loses against its own split,
    in points of object and relation accuracy (issue 40's target: at most 5 of objects)."""
    lines = []
    for own, other in (("test", "independent_test"), ("dev", "independent_dev")):
        if own in splits and other in splits:
            parts = [
                f"{name} {splits[other][metric]:.1%} against {splits[own][metric]:.1%} "
                f"(gap {100 * (splits[own][metric] - splits[other][metric]):.1f} points)"
                for name, metric in (
                    ("objects", "object_accuracy"),
                    ("relation", "relation_accuracy"),
                )
            ]
            lines.append(f"{other} against {own}: " + ", ".join(parts) + ".")
    return ["", *lines] if lines else []


if __name__ == "__main__":
    main(Path(sys.argv[1]))
