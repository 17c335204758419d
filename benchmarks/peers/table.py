"""The rows of the peer comparison table in ``benchmarks/README.md``, from the ``--output``
JSON files of the three peer benchmarks. Run with the project's python:
``python benchmarks/peers/table.py beam.json train.json transcribe.json``."""

import argparse
import json
from pathlib import Path

TARGETS = {"beam": 5.0, "train": 2.0, "transcribe": 10.0}  # issue 39, at 2 threads


def host(record: dict) -> str:
    return f"{record['machine']}, load {record['load_average_1min']:.1f}, {record['date'][:10]}"


def verdict(ratio: float, target: float, threads: str) -> str:
    if threads != "2":
        return f"{ratio}x"
    return f"**{ratio}x** ({'meets' if ratio >= target else 'misses'} >= {target:g}x)"


def rows(record: dict) -> list[str]:
    """One row per thread count (and corpus): what, command, host, this project, peer,
    ratio."""
    start = f"`{record['command']}` | {host(record)}"
    if "corpora" in record:
        lines = []
        for corpus, result in record["corpora"].items():
            ps = result["pocketsphinx"]
            wer = result["wer_percent"]
            what = f"transcription, {corpus} ({result['recordings']} recordings, "
            what += f"{result['audio_s'] / 60:.1f} min)"
            for threads, side in result["by_threads"].items():
                ratio = verdict(side["ms2s_times_as_fast"], TARGETS["transcribe"], threads)
                lines.append(
                    f"| {what}, {threads} thread(s) | {start} "
                    f"| RTF {side['ms2s']['real_time_factor']}, WER {wer['ms2s']}% "
                    f"| pocketsphinx RTF {ps['real_time_factor']}, WER {wer['pocketsphinx']}% "
                    f"| {ratio} |"
                )
        return lines
    kind = "beam" if "decoder_steps" in record else "train"
    what = "beam search" if kind == "beam" else "training step"
    if record.get("precision", "float32") != "float32":
        what += f" in {record['precision']}"
    return [
        f"| {what}, {threads} thread(s) | {start} | {side['ms2s']['median_s']} s "
        f"| SpeechBrain {side['speechbrain']['median_s']} s "
        f"| {verdict(side['ms2s_times_as_fast'], TARGETS[kind], threads)} |"
        for threads, side in record["by_threads"].items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    print("| what | command | host, date | this project | peer | this project is |")
    print("|---|---|---|---|---|---|")
    for path in args.results:
        print("\n".join(rows(json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
