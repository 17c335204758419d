"""Safe checkpoints: every file a run writes is plain data that ``torch.load(weights_only=True)``
reads with no allow-listed globals; a pickle that would run code is refused before any of it
runs; a trusted older checkpoint holding numpy values is converted by one command."""

import os
import pathlib
import random
import shutil

import numpy as np
import pytest
import soundfile
import torch
from conftest import SEQUENCES, SMALL

from multimodal_s2s.checkpoint import (
    FORMAT,
    convert_checkpoint,
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    resume_points,
    save_checkpoint,
)
from multimodal_s2s.cli import main
from multimodal_s2s.config import load_config
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.errors import InputError
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.resume import set_rng_state
from multimodal_s2s.training.train import train

RUN = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=4", "train.epochs=2"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished toy run: resume points, two kept epochs, best.pt and averaged.pt."""
    folder = tmp_path_factory.mktemp("run")
    config = load_config(None, RUN + ["train.keep_best=2", "train.average_best=true"])
    train(config, folder, progress=False)
    return folder


@pytest.fixture
def no_allowed_globals():
    """No allow-listed globals but torch's defaults while a test runs (``torch.distributed``
    allow-lists its own tensor types when imported)."""
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.add_safe_globals(allowed)


def test_every_checkpoint_a_run_writes_loads_with_weights_only(run_folder, no_allowed_globals):
    assert torch.serialization.get_safe_globals() == []
    written = sorted(run_folder.glob("*.pt"))
    assert [p.name for p in written] == [
        "averaged.pt",
        "best.pt",
        "checkpoint-1.pt",
        "checkpoint-2.pt",
        "epoch-1.pt",
        "epoch-2.pt",
    ]
    for path in written:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path.name
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["format"] == FORMAT and set(payload) >= {"config", "tokenizer", "model"}
    resume = torch.load(run_folder / "checkpoint-2.pt", weights_only=True)
    assert resume["position"] == {"epoch": 2, "batch": 0, "step": 2}
    python_state = resume["rng"][0]["python"]
    random.setstate(python_state)  # the random state reads back as Python's own
    assert random.getstate() == python_state


def test_numpy_values_are_saved_as_plain_data_and_other_objects_are_named(tmp_path):
    path = tmp_path / "numpy.pt"
    save_checkpoint({"kept": [(np.float64(0.25), np.int64(3))], "state": np.arange(4)}, path)
    payload = torch.load(path, weights_only=True)
    assert payload["kept"] == [(0.25, 3)] and type(payload["kept"][0][0]) is float
    assert torch.equal(payload["state"], torch.arange(4))
    with pytest.raises(TypeError, match=r"checkpoint\.extra\[1\] is a pathlib\.PosixPath"):
        save_checkpoint({"extra": [1, pathlib.Path("x")]}, tmp_path / "object.pt")


class _Touch:
    """Unpickling it calls ``action(marker)``: what a malicious checkpoint hides."""

    def __init__(self, action: str, marker: pathlib.Path):
        self.action, self.marker = action, marker

    def __reduce__(self):
        if self.action == "system":
            return os.system, (f"touch {self.marker}",)
        return pathlib.Path.touch, (self.marker,)


def _wav(path: pathlib.Path) -> pathlib.Path:
    soundfile.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return path


@pytest.mark.parametrize(("action", "named"), [("system", "posix.system"), ("touch", "Path")])
def test_a_checkpoint_whose_pickle_runs_code_is_refused_before_it_runs(
    tmp_path, capsys, run_folder, action, named
):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    payload = load_checkpoint(run_folder / "best.pt")
    torch.save({**payload, "config": _Touch(action, marker)}, evil)

    with pytest.raises(InputError) as error:
        load_checkpoint(evil)
    message = str(error.value)
    assert message.startswith(f"{evil}: not a safe checkpoint") and "\n" not in message
    assert named in message and f"ms2s convert-checkpoint {evil} NEW.pt" in message
    assert not marker.exists()

    assert main(["transcribe", "--model", str(evil), str(_wav(tmp_path / "a.wav"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {evil}: not a safe checkpoint") and err.count("\n") == 1
    assert not marker.exists()

    converted = tmp_path / "converted.pt"
    assert main(["convert-checkpoint", str(evil), str(converted)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {evil}: cannot be converted") and err.count("\n") == 1
    assert named in err and not marker.exists() and not converted.exists()

    torch.load(evil, weights_only=False)  # the check can fail: loaded unsafely, the code runs
    assert marker.exists()


def _old_format(payload: dict) -> dict:
    """A resume point as a version that pickled numpy values wrote it: numpy's random state
    next to Python's and torch's, numpy scalars for the kept epochs' scores and the step."""
    rng = [{**state, "numpy": np.random.get_state()} for state in payload["rng"]]
    kept = [(np.float64(score), np.int64(epoch)) for score, epoch in payload["kept"]]
    position = {**payload["position"], "step": np.int64(payload["position"]["step"])}
    return {**payload, "rng": rng, "kept": kept, "position": position}


def test_an_older_checkpoint_with_numpy_values_converts_and_decodes_the_same(
    tmp_path, capsys, run_folder
):
    saved = load_checkpoint(resume_points(run_folder)[0])
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save(_old_format(saved), old)

    with pytest.raises(InputError, match=f"{old}: not a safe checkpoint: .*numpy.*"):
        load_model(old)
    message = f"not a safe checkpoint: .*ms2s convert-checkpoint {old} NEW.pt"
    with pytest.raises(InputError, match=message):
        load_checkpoint(old)

    assert main(["convert-checkpoint", str(old), str(new)]) == 0
    assert capsys.readouterr().out == f"wrote {new} (loads with torch.load(weights_only=True))\n"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(new) == []
    converted = torch.load(new, weights_only=True)
    assert converted["kept"] == saved["kept"] and type(converted["kept"][0][0]) is float
    assert converted["position"] == saved["position"]
    numpy_state = converted["rng"][0]["numpy"]
    assert torch.equal(numpy_state[1], torch.from_numpy(np.random.get_state()[1]))

    set_rng_state(converted["rng"][0])  # resuming restores the saved random state exactly
    assert random.getstate() == saved["rng"][0]["python"]
    assert torch.equal(torch.get_rng_state(), saved["rng"][0]["torch"])

    trusted = torch.load(old, weights_only=False)  # the test wrote it: it may be unpickled
    before, tokenizer, config = model_from_checkpoint(trusted, old)
    after, _, _ = load_model(new)
    data = build_source(config.data)
    records = [
        evaluate_model(model.eval(), tokenizer, data, "dev", config, "cpu").records
        for model in (before, after)
    ]
    assert [r["hyp"] for r in records[0]] == [r["hyp"] for r in records[1]]
    assert records[0] == records[1]


def test_converting_in_place_and_a_current_checkpoint_are_fine(tmp_path, run_folder):
    path = tmp_path / "best.pt"
    shutil.copyfile(run_folder / "best.pt", path)
    convert_checkpoint(path, path)
    before, after = load_checkpoint(run_folder / "best.pt"), load_checkpoint(path)
    assert before["model"].keys() == after["model"].keys()
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])


def test_a_plain_file_without_a_model_is_named(tmp_path):
    path = tmp_path / "partial.pt"
    save_checkpoint({"config": {}}, path)
    with pytest.raises(InputError, match="partial.pt: not a model checkpoint .*'tokenizer'"):
        load_model(path)
