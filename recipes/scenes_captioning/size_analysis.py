"""How often a model names the objects of an independently composited split, by their size.

    python recipes/scenes_captioning/size_analysis.py \
        --manifest CACHE/independent_dev.jsonl --report RUN/report/independent_dev.jsonl

The split's rows hold each object's drawn box (``sizes``, in caption order; written by
``multimodal_s2s/corpora/scenes/independent.py``), the report the model's caption of each
image (``ms2s evaluate --report``). Each object counts as named as the recipe's object
accuracy counts it (``scene_scoring.named_slots``: the same object in the same place of the
caption), grouped by the longer side of its box in bins of ``--bin`` pixels.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.data.scene_scoring import named_slots
from multimodal_s2s.errors import InputError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="an independent split")
    parser.add_argument("--report", type=Path, required=True, help="the report of that split")
    parser.add_argument("--bin", type=int, default=4, help="bin width in pixels")
    args = parser.parse_args()
    if args.bin < 1:
        parser.error(f"--bin must be at least 1, got {args.bin}")
    try:
        bins = named_by_size(args.manifest, args.report, args.bin)
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.manifest.name}: objects named, by the longer side of their drawn box")
    for low in sorted(bins):
        named, count = bins[low]
        print(f"  {low:3d}-{low + args.bin - 1} px: {named / count:.3f} of {count}")
    named, count = (sum(column) for column in zip(*bins.values(), strict=True))
    print(f"  all: {named / count:.3f} of {count}")


def named_by_size(manifest: Path, report: Path, width: int) -> dict[int, list[int]]:
    """``{bin's smallest longer side: [objects named, objects]}`` over the manifest's rows."""
    hyps = _hypotheses(report)
    bins: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in read_manifest(manifest, "image", "caption"):
        if "sizes" not in row:
            raise InputError(
                f"{manifest}: rows without the objects' sizes; build the split again "
                "(python -m multimodal_s2s.corpora.scenes.prepare)"
            )
        if row["image"] not in hyps:
            raise InputError(f"{report}: no caption of {row['image']}")
        named = named_slots(hyps[row["image"]], row["caption"])
        for (box_width, box_height), hit in zip(row["sizes"], named, strict=True):
            low = max(box_width, box_height) // width * width
            bins[low][0] += hit
            bins[low][1] += 1
    if not bins:
        raise InputError(f"{manifest}: no scenes")
    return dict(bins)


def _hypotheses(report: Path) -> dict[str, str]:
    if not report.is_file():
        raise InputError(f"{report}: report not found")
    with report.open() as lines:
        return {record["key"]: record["hyp"] for record in map(json.loads, lines)}


if __name__ == "__main__":
    main()
