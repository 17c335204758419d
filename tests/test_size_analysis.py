"""The scenes recipe's size_analysis.py: objects named by their drawn size, and its errors."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "recipes/scenes_captioning/size_analysis.py"
ROWS = [  # caption, sizes in caption order, the model's caption
    ("a dog above an owl", [[13, 9], [30, 22]], "a dog above a cat"),
    ("an owl to the left of a cat", [[14, 15], [17, 12]], "an owl to the left of a cat"),
    ("an apple", [[25, 31]], "a cat"),
]


def _run(tmp_path: Path, rows: list[dict], records: list[dict]) -> subprocess.CompletedProcess:
    manifest, report = tmp_path / "independent_dev.jsonl", tmp_path / "report.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report.write_text("".join(json.dumps(record) + "\n" for record in records))
    command = [sys.executable, str(SCRIPT), "--manifest", str(manifest), "--report", str(report)]
    return subprocess.run(command, capture_output=True, text=True)


def _split(with_sizes: bool = True) -> tuple[list[dict], list[dict]]:
    rows, records = [], []
    for index, (caption, sizes, hyp) in enumerate(ROWS):
        image = f"/images/{index}.jpg"
        rows.append({"image": image, "caption": caption} | ({"sizes": sizes} if with_sizes else {}))
        records.append({"key": image, "ref": caption, "hyp": hyp})
    return rows, records


def test_objects_are_counted_in_bins_of_their_longer_side(tmp_path: Path) -> None:
    result = _run(tmp_path, *_split())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "independent_dev.jsonl: objects named, by the longer side of their drawn box",
        "   12-15 px: 1.000 of 2",  # the dog (13), the owl (15)
        "   16-19 px: 1.000 of 1",  # the cat (17)
        "   28-31 px: 0.000 of 2",  # the owl with a cat in its place (30), the apple (31)
        "  all: 0.600 of 5",
    ]


def test_rows_without_sizes_and_missing_captions_are_one_line_errors(tmp_path: Path) -> None:
    rows, records = _split(with_sizes=False)
    result = _run(tmp_path, rows, records)
    assert result.returncode != 0
    assert result.stderr.strip().endswith(
        "rows without the objects' sizes; build the split again "
        "(python -m multimodal_s2s.corpora.scenes.prepare)"
    )
    rows, records = _split()
    result = _run(tmp_path, rows, records[:2])
    assert result.returncode != 0
    report = tmp_path / "report.jsonl"
    assert result.stderr.strip() == f"error: {report}: no caption of /images/2.jpg"
