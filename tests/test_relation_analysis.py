"""The scenes recipe's relation_analysis.py on a tiny corpus of the installed stamps and
backgrounds: its tables, and a clean line when no caption names two objects."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_s2s.corpora.scenes.backgrounds import DEFAULT_BACKGROUND_ROOT
from multimodal_s2s.corpora.scenes.prepare import prepare_corpus
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT

SCRIPT = Path(__file__).resolve().parents[1] / "recipes/scenes_captioning/relation_analysis.py"
NUM_TEST = 4

pytestmark = pytest.mark.skipif(
    not (DEFAULT_STAMP_ROOT.is_dir() and DEFAULT_BACKGROUND_ROOT.is_dir()),
    reason="the Debian stamp and background packages are not installed",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of 16-pixel images, as few training scenes as there are objects."""
    out_dir = tmp_path_factory.mktemp("scenes")
    prepare_corpus(
        out_dir, image_size=16, num_train=400, num_dev=0, num_test=NUM_TEST, jobs=1, num_textures=4
    )
    return out_dir


def _analyse(corpus: Path, tmp_path: Path, hypothesis) -> subprocess.CompletedProcess:
    """Run the script on a report whose hypothesis for each test row is ``hypothesis(row)``."""
    report = tmp_path / "test.jsonl"
    with report.open("w") as lines:
        for row in map(json.loads, (corpus / "test.jsonl").open()):
            record = {"key": row["image"], "hyp": hypothesis(row), "ref": row["caption"]}
            lines.write(json.dumps(record) + "\n")
    command = [sys.executable, str(SCRIPT), "--corpus", str(corpus), "--report", str(report)]
    return subprocess.run(command, capture_output=True, text=True)


def test_correct_captions_are_counted_by_margin(corpus: Path, tmp_path: Path) -> None:
    result = _analyse(corpus, tmp_path, lambda row: row["caption"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index(
        f"{NUM_TEST} of {NUM_TEST} captions name two different objects; relation word right:"
    )
    assert lines[at + 1] == f"  all: 1.000 of {NUM_TEST}"
    assert 'they say "left of"' in lines[at + 6]


def test_no_caption_naming_two_objects_is_one_line(corpus: Path, tmp_path: Path) -> None:
    result = _analyse(corpus, tmp_path, lambda row: f"a {row['objects'][0]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"0 of {NUM_TEST} captions name two different objects: no relation word to score"
    )
