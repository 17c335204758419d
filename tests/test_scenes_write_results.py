"""The scenes recipe's write_results.py on a fake finished run: the table of the pasted photos
(``assets/photo-*.jpg``) says which captions name the pasted object."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes/scenes_captioning/write_results.py"
METRICS = ("object_accuracy", "relation_accuracy", "bleu4", "cider_d", "exact_match", "wer")


def _expected() -> list[tuple[str, str]]:
    """``(file, object)`` of each line of ``assets/photo_captions.tsv`` (``a deer`` -> deer)."""
    rows = []
    for line in (ROOT / "assets/photo_captions.tsv").read_text().splitlines():
        name, _, caption = line.partition("\t")
        rows.append((name, caption.split(" ", 1)[1]))
    return rows


def _fake_run(run: Path, captions: list[tuple[str, str]]) -> None:
    """A run folder as run.sh leaves it, with ``(file, caption)`` as the photos' captions."""
    (run / "report").mkdir(parents=True)
    split = {metric: 0.5 for metric in METRICS}
    (run / "report/results.json").write_text(json.dumps({"test": split}))
    speed = {"beam": 5, "images": 8, "threads": 1, "batch_size": 8, "same_captions": True}
    speed |= {"batched_images_per_s": 4.0, "one_at_a_time_images_per_s": 2.0, "speedup": 2.0}
    (run / "throughput.json").write_text(json.dumps(speed))
    (run / "timings.tsv").write_text("photos\t10.0\t12.5\n")
    records = [
        {"image": f"assets/{name}", "caption": text, "score": 1.0} for name, text in captions
    ]
    (run / "photo_captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_photo_table_says_which_captions_name_the_pasted_object(tmp_path: Path) -> None:
    (first, deer), (second, duck), (third, squirrel) = _expected()
    captions = [
        (first, f"a {deer} to the left of a mug"),  # named, first of two
        (second, f"a rubber {duck}"),  # another object whose name holds the word
        (third, f"a shipwreck above a {squirrel}"),  # named, second of two
    ]
    _fake_run(tmp_path, captions)

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    text = (tmp_path / "results.md").read_text()
    assert "2 of 3 captions name the pasted object" in text
    assert f"| {first} | {captions[0][1]} | {deer} | yes |" in text
    assert f"| {second} | {captions[1][1]} | {duck} | no |" in text
    assert f"| {third} | {captions[2][1]} | {squirrel} | yes |" in text
    photos = json.loads((tmp_path / "results.json").read_text())["photos"]
    assert [photo["named"] for photo in photos] == [True, False, True]


def test_a_photo_without_an_expected_caption_stops_the_script(tmp_path: Path) -> None:
    _fake_run(tmp_path, [("holiday.jpg", "a deer")])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "holiday.jpg has no caption in" in result.stderr
