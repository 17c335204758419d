"""The sample files of ``assets/`` (written by ``scripts/make_assets.py``) and the README's
Python example, run as written on them with tiny models trained here on those files.

Only the committed files are read: no test needs a TTS engine. The one test that draws the
scenes and the pasted photos again needs the Debian packages they come from and skips without
them."""

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile

from multimodal_s2s.config import load_config
from multimodal_s2s.corpora.phone_menu.text import VOCABULARY, is_valid_label
from multimodal_s2s.corpora.scenes.backgrounds import DEFAULT_BACKGROUND_ROOT
from multimodal_s2s.corpora.scenes.photo_paste import IMAGE_SIZE as PHOTO_SIZE
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT
from multimodal_s2s.data.audio import load_audio
from multimodal_s2s.data.caption_import import import_caption_tsv
from multimodal_s2s.data.image import load_image
from multimodal_s2s.data.scene_captions import format_caption, parse_caption
from multimodal_s2s.training.train import train

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
README = ROOT / "README.md"
MAKE_ASSETS = ROOT / "scripts" / "make_assets.py"
RATE = 16000
MAX_BYTES = 1_000_000
SCENE_SIZE = 64  # the scenes_captioning recipe's data.image_size


def read_tsv(name: str) -> list[tuple[str, str]]:
    """``(file, text)`` of each line of ``assets/<name>``."""
    rows = []
    for line in (ASSETS / name).read_text(encoding="utf-8").splitlines():
        file, tab, text = line.partition("\t")
        assert tab and file and text == " ".join(text.split()), f"{name}: bad line {line!r}"
        rows.append((file, text))
    return rows


TRANSCRIPTS = read_tsv("transcripts.tsv")
CAPTIONS = read_tsv("captions.tsv")
PHOTO_CAPTIONS = read_tsv("photo_captions.tsv")
TABLES = ["README.md", "captions.tsv", "photo_captions.tsv", "transcripts.tsv"]
PHOTO_PACKAGE = "plasma-workspace-wallpapers"


def test_the_assets_folder_is_small_and_every_file_is_listed():
    files = sorted(path.name for path in ASSETS.iterdir())
    listed = [name for name, _ in TRANSCRIPTS + CAPTIONS + PHOTO_CAPTIONS]
    assert files == sorted([*listed, *TABLES])
    assert len(TRANSCRIPTS) >= 3 and len(CAPTIONS) >= 3 and len(PHOTO_CAPTIONS) == 3
    assert sum((ASSETS / name).stat().st_size for name in files) < MAX_BYTES
    # The globs of the README and of the scenes recipe's run.sh, sorted, meet the files in
    # the order of the tsv files.
    assert [p.name for p in sorted(ASSETS.glob("*.wav"))] == [name for name, _ in TRANSCRIPTS]
    assert [p.name for p in sorted(ASSETS.glob("scene-*.jpg"))] == [n for n, _ in CAPTIONS]
    assert [p.name for p in sorted(ASSETS.glob("photo-*.jpg"))] == [n for n, _ in PHOTO_CAPTIONS]
    assert len(list(ASSETS.glob("*.jpg"))) == len(CAPTIONS) + len(PHOTO_CAPTIONS)
    about = (ASSETS / "README.md").read_text(encoding="utf-8")
    assert "python scripts/make_assets.py" in about
    for name, text in TRANSCRIPTS + CAPTIONS + PHOTO_CAPTIONS:
        assert f"| `{name}` | {text} |" in about


@pytest.mark.parametrize(("name", "text"), TRANSCRIPTS, ids=[name for name, _ in TRANSCRIPTS])
def test_a_recording_is_16_khz_mono_16_bit_speech_of_a_phone_menu_phrase(name, text):
    info = soundfile.info(ASSETS / name)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        RATE,
        1,
    )
    wave = load_audio(ASSETS / name, RATE)
    assert 1.0 <= wave.shape[0] / RATE <= 3.0
    assert 0.5 < wave.abs().max() <= 1.0  # speech, not silence
    assert is_valid_label(text) and set(text.split()) <= VOCABULARY


@pytest.mark.parametrize(
    ("name", "caption", "side", "objects"),
    [(name, caption, SCENE_SIZE, 2) for name, caption in CAPTIONS]
    + [(name, caption, PHOTO_SIZE, 1) for name, caption in PHOTO_CAPTIONS],
    ids=[name for name, _ in CAPTIONS + PHOTO_CAPTIONS],
)
def test_an_image_loads_and_its_caption_is_in_the_scene_grammar(name, caption, side, objects):
    # scenes: two objects at the recipe's size; pasted photos: the one pasted object
    image = load_image(ASSETS / name)
    assert (image.mode, image.size) == ("RGB", (side, side))
    parsed = parse_caption(caption)
    assert len(parsed.objects) == objects and format_caption(parsed) == caption


@pytest.mark.parametrize(
    ("tsv", "rows"), [(ASSETS, CAPTIONS), (ASSETS / "photo_captions.tsv", PHOTO_CAPTIONS)]
)
def test_the_caption_tables_are_read_by_the_caption_tsv_importer(tsv, rows):
    records = import_caption_tsv(tsv)
    assert [(Path(r["image"]).name, r["captions"]) for r in records] == [
        (name, [caption]) for name, caption in rows
    ]


def _recorded_versions() -> dict[str, str]:
    """``package: version`` from the "Made with" list of ``assets/README.md``."""
    about = (ASSETS / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^- (?:Debian|Python) `([^`]+)` (\S+)$", about, re.MULTILINE))


def _installed_debian_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def test_the_generator_draws_the_committed_scenes_and_photos_again(tmp_path):
    photo_package = _installed_debian_version(PHOTO_PACKAGE)
    if not DEFAULT_STAMP_ROOT.is_dir() or not DEFAULT_BACKGROUND_ROOT.is_dir() or not photo_package:
        pytest.skip(
            "the Debian packages tuxpaint-stamps-default, mate-backgrounds and "
            f"{PHOTO_PACKAGE} are missing"
        )
    recorded = _recorded_versions()
    installed = {
        "tuxpaint-stamps-default": _installed_debian_version("tuxpaint-stamps-default"),
        "mate-backgrounds": _installed_debian_version("mate-backgrounds"),
        PHOTO_PACKAGE: photo_package,
        "pillow": importlib.metadata.version("pillow"),
    }
    differing = [
        f"{package} {version} (assets: {recorded.get(package)})"
        for package, version in installed.items()
        if recorded.get(package) != version
    ]
    if differing:
        pytest.skip(f"the assets were drawn with other package versions: {', '.join(differing)}")
    spec = importlib.util.spec_from_file_location("make_assets", MAKE_ASSETS)
    make_assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_assets)

    drawn = make_assets.write_scenes(tmp_path)
    pasted = make_assets.write_photos(tmp_path)

    assert [(name, caption) for name, caption, _ in drawn] == CAPTIONS
    assert [(name, caption) for name, caption, _, _ in pasted] == PHOTO_CAPTIONS
    for name, _ in CAPTIONS + PHOTO_CAPTIONS:
        assert (tmp_path / name).read_bytes() == (ASSETS / name).read_bytes(), name


# Tiny models that learn the assets by heart in a few seconds on one CPU thread: the
# manifest lists the assets many times, so that one epoch is many optimizer steps.
SPEECH_MODEL = [
    "data.name=speech",
    "data.features.num_mel_bins=40",
    "data.features.num_freq_masks=0",
    "data.features.num_time_masks=0",
    "encoder.name=pblstm",
    "encoder.input_dim=40",
    "encoder.hidden_dim=32",
    "encoder.num_layers=2",
    "tokenizer.kind=word",
    "train.epochs=10",
]
IMAGE_MODEL = [
    "data.name=images",
    "data.image_size=32",
    "data.augment=false",
    "encoder.name=cnn",
    "encoder.channels=[8, 16]",
    "tokenizer.kind=word",
    "train.epochs=6",
]
SMALL = [
    "decoder.hidden_dim=64",
    "decoder.embedding_dim=16",
    "decoder.dropout=0.0",
    "loss.label_smoothing=0.0",
    "train.batch_size=3",
    "train.learning_rate=0.01",
    "train.warmup_steps=5",
    "train.device=cpu",
    "train.keep_best=1",
    "train.select_by=loss",
    "data.num_workers=0",
]
REPEATS = 20


def _learn_by_heart(folder: Path, overrides: list[str], rows: list[dict]) -> Path:
    """Train a tiny model on ``rows`` (manifest records) repeated ``REPEATS`` times; its
    best checkpoint."""
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    (folder / "train.jsonl").write_text(lines * REPEATS)
    (folder / "dev.jsonl").write_text(lines)
    manifests = [f"data.train={folder / 'train.jsonl'}", f"data.dev={folder / 'dev.jsonl'}"]
    config = load_config(None, overrides + SMALL + manifests)
    return train(config, folder / "run", progress=False).best_checkpoint


@pytest.fixture(scope="module")
def asset_models(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of a speech model and a captioning model that know the assets."""
    folder = tmp_path_factory.mktemp("asset_models")
    (folder / "speech").mkdir()
    (folder / "images").mkdir()
    speech = [{"audio": str(ASSETS / name), "text": text} for name, text in TRANSCRIPTS]
    images = [
        {"image": str(ASSETS / name), "caption": text} for name, text in CAPTIONS + PHOTO_CAPTIONS
    ]
    return {
        "speech": _learn_by_heart(folder / "speech", SPEECH_MODEL, speech),
        "images": _learn_by_heart(folder / "images", IMAGE_MODEL, images),
    }


def readme_python_example() -> str:
    """The code of the README's ``In Python`` section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## In Python")
    begin = text.index("```python\n", start) + len("```python\n")
    return text[begin : text.index("```\n", begin)]


def test_the_readme_python_example_transcribes_and_captions_the_assets(
    asset_models, monkeypatch, capsys
):
    code = readme_python_example()
    assert len(code.splitlines()) <= 10
    checkpoints = re.findall(r'(\w+)\.from_checkpoint\("([^"]+)"\)', code)
    assert [cls for cls, _ in checkpoints] == ["Transcriber", "Captioner"]
    for (_, path), model, recipe in zip(
        checkpoints, ("speech", "images"), ("phone_menu_asr", "scenes_captioning"), strict=True
    ):
        # The checkpoint the recipe's run.sh writes by default.
        assert path == f"exp/{recipe}/best.pt"
        assert f"exp/{recipe}}}" in (ROOT / "recipes" / recipe / "run.sh").read_text()
        code = code.replace(f'"{path}"', repr(str(asset_models[model])))
    monkeypatch.chdir(ROOT)

    exec(compile(code, "README.md", "exec"), {})

    printed = capsys.readouterr().out.splitlines()
    # The README captions every image of assets/: the scenes and the pasted photos.
    images = sorted(CAPTIONS + PHOTO_CAPTIONS)
    expected = [f"assets/{name} {text}" for name, text in TRANSCRIPTS + images]
    assert printed == expected
