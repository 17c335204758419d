"""Split a speechocean762 training manifest into train and dev by whole speakers.

    python recipes/speechocean762_asr/split_dev.py ALL.jsonl TRAIN.jsonl DEV.jsonl \
        [--children 6] [--adults 6] [--seed 0]

Dev holds every utterance of ``--children`` speakers under 18 and ``--adults`` speakers of
18 or more (drawn with ``--seed``), so a checkpoint is chosen on voices that never trained,
as the test speakers are. Records need ``speaker`` and ``age`` (``ms2s import kaldi`` reads
them from ``utt2spk`` and ``spk2age``).
"""

import argparse
import random
import sys
from pathlib import Path

from multimodal_s2s.data.manifest import ADULT_AGE, read_manifest, write_manifest
from multimodal_s2s.errors import InputError


def split_by_speaker(
    records: list[dict], children: int, adults: int, seed: int
) -> tuple[list[dict], list[dict]]:
    """(train, dev) records; dev holds all utterances of the drawn speakers, both keep order.

    Raises:
        InputError: a record lacks ``speaker`` or ``age``, or there are too few speakers.
    """
    ages = {}
    for record in records:
        if "speaker" not in record or "age" not in record:
            raise InputError(f"{record.get('id', record['audio'])}: record has no speaker or age")
        ages[record["speaker"]] = record["age"]
    young = sorted(s for s, age in ages.items() if age < ADULT_AGE)
    old = sorted(s for s, age in ages.items() if age >= ADULT_AGE)
    if children > len(young) or adults > len(old):
        raise InputError(
            f"asked for {children} children and {adults} adults as dev speakers, "
            f"the manifest has {len(young)} and {len(old)}"
        )
    rng = random.Random(seed)
    dev = set(rng.sample(young, children) + rng.sample(old, adults))
    return (
        [r for r in records if r["speaker"] not in dev],
        [r for r in records if r["speaker"] in dev],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("all", type=Path)
    parser.add_argument("train", type=Path)
    parser.add_argument("dev", type=Path)
    parser.add_argument("--children", type=int, default=6)
    parser.add_argument("--adults", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        train, dev = split_by_speaker(
            read_manifest(args.all), args.children, args.adults, args.seed
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_manifest(train, args.train)
    write_manifest(dev, args.dev)
    speakers = len({r["speaker"] for r in dev})
    print(f"train: {len(train)} utterances; dev: {len(dev)} utterances of {speakers} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
