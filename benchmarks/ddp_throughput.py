"""Data-parallel overhead: training samples/s of 1 process vs N ``torchrun`` processes (gloo).

Trains the speech recipe's model (``recipes/phone_menu_asr/config.yaml``) for one epoch on
the first ``--utterances`` training utterances of a prepared phone-menu corpus, once per
setting, each in a fresh run folder, with the same global batch (the recipe's ``batch_size``
and ``data.max_frames`` for one process, 1/N of them per process for N). Reads the
trainer's own ``samples_per_s`` (items per second of wall time since the epoch started, so
start-up and dev evaluation are excluded) from the last step record of ``metrics.jsonl``.
Run on an idle machine:
``python benchmarks/ddp_throughput.py --corpus cache/phone_menu``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch
from machine import describe

from multimodal_s2s.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "recipes" / "phone_menu_asr" / "config.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, type=Path, help="prepared phone-menu corpus")
    parser.add_argument("--utterances", type=int, default=960, help="training utterances")
    parser.add_argument("--processes", type=int, default=2, help="N for the torchrun run")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        train = _head(args.corpus / "train.jsonl", args.utterances, folder / "train.jsonl")
        dev = _head(args.corpus / "dev.jsonl", 16, folder / "dev.jsonl")
        settings = [
            ("1 process, 2 threads", 1, 2),
            ("1 process, 1 thread", 1, 1),
            (f"{args.processes} processes x 1 thread (gloo)", args.processes, 1),
        ]
        results = []
        for name, processes, threads in settings:
            rate = _samples_per_s(train, dev, folder / f"run{len(results)}", processes, threads)
            results.append({"setting": name, "samples_per_s": round(rate, 2)})
            print(f"{name}: {rate:.1f} samples/s", flush=True)
    report = {
        "date": date.today().isoformat(),
        **describe(torch.device("cpu")),
        "utterances": args.utterances,
        "global_batch": load_config(CONFIG).train.batch_size,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


def _head(manifest: Path, count: int, out: Path) -> Path:
    """The first ``count`` lines of ``manifest``, with audio paths made absolute."""
    lines = []
    for line in manifest.read_text().splitlines()[:count]:
        record = json.loads(line)
        record["audio"] = str((manifest.parent / record["audio"]).resolve())
        lines.append(json.dumps(record))
    out.write_text("\n".join(lines) + "\n")
    return out


def _samples_per_s(train: Path, dev: Path, out: Path, processes: int, threads: int) -> float:
    recipe = load_config(CONFIG)
    overrides = [
        f"data.train={train}",
        f"data.dev={dev}",
        "data.test={}",
        "train.epochs=1",
        "train.device=cpu",
        "train.log_every=5",
        "train.save_every_steps=0",
        f"train.batch_size={recipe.train.batch_size // processes}",
        f"data.max_frames={recipe.data.max_frames // processes}",
    ]
    command = [sys.executable, "-m", "multimodal_s2s.cli", "train", str(CONFIG), *overrides]
    if processes > 1:
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launch, *command[1:]]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*command, "--out", str(out)], env=environment, check=True, cwd=ROOT)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "samples_per_s" in r][-1]["samples_per_s"]


if __name__ == "__main__":
    main()
