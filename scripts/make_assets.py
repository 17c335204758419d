"""Write ``assets/``: the sample recordings, scene images and pasted photos of the README.

    python scripts/make_assets.py [OUT_DIR]      (default: assets/ at the repository root)

Everything is made on this machine, nothing downloaded:

- three phone-menu phrases spoken by the three TTS voices the ``phone_menu_asr`` recipe holds
  out for its test set (``voices.TEST_VOICE_IDS``), through the phone-menu corpus code
  (``multimodal_s2s/corpora/phone_menu/``), as 16 kHz mono 16-bit WAV, with
  ``transcripts.tsv`` (``file<TAB>text``);
- the first three test scenes of the ``scenes_captioning`` recipe's corpus, drawn by the scene
  corpus code (``multimodal_s2s/corpora/scenes/``) at the recipe's size and settings, byte for
  byte the images ``recipes/scenes_captioning/run.sh`` draws, with ``captions.tsv``
  (``file<TAB>caption``, the format ``ms2s import caption-tsv`` reads);
- three real photographs with one Tux Paint stamp pasted in by hand
  (``multimodal_s2s/corpora/scenes/photo_paste.py``: photo, object and place chosen by hand),
  with ``photo_captions.tsv`` in the same format;
- ``README.md``: what each file is, how it was made, and the versions of the packages that
  made it. Run again with the same packages, the script writes the same bytes.
"""

import argparse
import importlib.metadata
import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from multimodal_s2s.corpora.phone_menu import augment
from multimodal_s2s.corpora.phone_menu.real import read_recording
from multimodal_s2s.corpora.phone_menu.text import VOCABULARY, is_valid_label
from multimodal_s2s.corpora.phone_menu.voices import TEST_VOICE_IDS, available_voices
from multimodal_s2s.corpora.scenes.backgrounds import find_photos
from multimodal_s2s.corpora.scenes.photo_paste import (
    IMAGE_SIZE,
    PASTED_PHOTOS,
    PhotoPaste,
    paste_photo,
)
from multimodal_s2s.corpora.scenes.prepare import IMAGE_FORMATS, plan_corpus
from multimodal_s2s.corpora.scenes.render import SceneRenderer
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT, find_objects
from multimodal_s2s.data.scene_captions import format_caption
from multimodal_s2s.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
# (file, label, voice id): one phrase for each held-out test voice of the speech recipe.
RECORDINGS = (
    ("speech-1.wav", "press the pound key", TEST_VOICE_IDS[0]),
    ("speech-2.wav", "my pin is four two seven one", TEST_VOICE_IDS[1]),
    ("speech-3.wav", "tomorrow at ten thirty a m", TEST_VOICE_IDS[2]),
)
PAD_S = 0.15  # silence before and after each phrase
PEAK = 0.9
# The scene corpus as recipes/scenes_captioning/run.sh draws it (prepare_corpus's settings).
SCENE_SEED = 0
SCENE_IMAGE_SIZE = 64
SCENE_COUNTS = {"train": 40000, "dev": 500, "test": 1000}
SCENE_TEXTURES = 60
SCENE_FORMAT = "jpg"
NUM_SCENES = 3
PHOTO_FORMAT = "jpg"  # the scenes' JPEG settings
# Where the inputs come from: Debian packages (TTS voices, stamps, backgrounds) and the
# Python packages whose code decides the bytes (resampling, drawing and JPEG coding).
DEBIAN_PACKAGES = (
    "flite",
    "libflite1",
    "festival",
    "festvox-kdlpc16k",
    "espeak-ng-data",
    "libespeak-ng1",
    "tuxpaint-stamps-default",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
)
PYTHON_PACKAGES = ("pillow", "torchaudio")


def write_recordings(folder: Path) -> list[tuple[str, str, str, float]]:
    """Speak ``RECORDINGS`` into ``folder``; ``(file, text, voice id, seconds)`` of each."""
    voices = {voice.id: voice for voice in available_voices()}
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, text, voice_id in RECORDINGS:
            if not is_valid_label(text) or not set(text.split()) <= VOCABULARY:
                raise InputError(f"{text!r} is not a phone-menu label")
            if voice_id not in voices:
                raise InputError(f"TTS voice {voice_id} is not installed")
            raw = Path(scratch) / name
            voices[voice_id].synthesize(text, raw)
            audio = augment.resample(*read_recording(raw))
            audio = np.pad(audio, round(PAD_S * augment.SAMPLE_RATE))
            audio = np.clip(augment.normalize_peak(audio, PEAK), -1.0, 1.0)
            _write_bytes(folder / name, _wav_bytes(audio))
            written.append((name, text, voice_id, len(audio) / augment.SAMPLE_RATE))
    return written


def write_scenes(folder: Path) -> list[tuple[str, str, str]]:
    """Draw the first ``NUM_SCENES`` test scenes of the recipe's corpus into ``folder``;
    ``(file, caption, background id)`` of each."""
    photos = find_photos()
    settings = {"seed": SCENE_SEED, "counts": SCENE_COUNTS, "num_textures": SCENE_TEXTURES}
    specs = plan_corpus(find_objects(), photos, settings)["test"][:NUM_SCENES]
    renderer = SceneRenderer(SCENE_IMAGE_SIZE, SCENE_SEED, photos)
    pil_format, options = IMAGE_FORMATS[SCENE_FORMAT]
    written = []
    for number, spec in enumerate(specs, start=1):
        scene = renderer.render(spec)
        name = f"scene-{number}.{SCENE_FORMAT}"
        encoded = io.BytesIO()
        scene.image.save(encoded, pil_format, **options)
        _write_bytes(folder / name, encoded.getvalue())
        written.append((name, format_caption(scene.caption), spec.background))
    return written


def write_photos(folder: Path) -> list[tuple[str, str, PhotoPaste, Path]]:
    """Paste a stamp into each photo of ``PASTED_PHOTOS`` into ``folder``; ``(file, caption,
    paste, stamp file)`` of each."""
    pil_format, options = IMAGE_FORMATS[PHOTO_FORMAT]
    written = []
    for number, paste in enumerate(PASTED_PHOTOS, start=1):
        pasted = paste_photo(paste)
        name = f"photo-{number}.{PHOTO_FORMAT}"
        encoded = io.BytesIO()
        pasted.image.save(encoded, pil_format, **options)
        _write_bytes(folder / name, encoded.getvalue())
        written.append((name, pasted.caption, paste, pasted.stamp))
    return written


def package_versions() -> list[tuple[str, str, str]]:
    """``(kind, package, version)`` of ``DEBIAN_PACKAGES`` and ``PYTHON_PACKAGES``; the
    version is ``unknown`` where it cannot be found."""
    versions = [("Debian", name, debian_version(name)) for name in DEBIAN_PACKAGES]
    for name in PYTHON_PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        versions.append(("Python", name, version))
    return versions


def debian_version(package: str) -> str:
    """The installed version of a Debian package, or ``unknown``."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def readme(
    recordings: list[tuple[str, str, str, float]],
    scenes: list[tuple[str, str, str]],
    photos: list[tuple[str, str, PhotoPaste, Path]],
    versions: list[tuple[str, str, str]],
) -> str:
    """The text of ``assets/README.md``."""
    lines = [
        "# Sample recordings and images",
        "",
        "Small inputs for the README's quick start and for the tests, made by this project",
        "itself, nothing downloaded. `python scripts/make_assets.py` writes this folder again,",
        "byte for byte with the package versions listed at the end.",
        "",
        "## Recordings (`transcripts.tsv`: file, text)",
        "",
        "16 kHz mono 16-bit WAV: phone-menu phrases spoken by Debian TTS voices through the",
        f"phone-menu corpus code (`multimodal_s2s/corpora/phone_menu/`), with {PAD_S} s of silence",
        "before and after. The voices are the three the `phone_menu_asr` recipe holds out for",
        "its test set, so its model has never heard them.",
        "",
        "| file | text | voice | seconds |",
        "|---|---|---|---|",
        *(f"| `{n}` | {t} | {v} | {s:.2f} |" for n, t, v, s in recordings),
        "",
        "## Images (`captions.tsv`: file, caption)",
        "",
        f"The first {len(scenes)} test scenes of the `scenes_captioning` recipe's corpus, as",
        "`recipes/scenes_captioning/run.sh` draws it "
        f"(seed {SCENE_SEED}, {SCENE_IMAGE_SIZE} x {SCENE_IMAGE_SIZE} pixels, JPEG):",
        "Tux Paint stamps over a MATE background photo or a generated texture, drawn by the",
        "scene corpus code (`multimodal_s2s/corpora/scenes/`). Their object pairs and",
        "backgrounds never occur in the recipe's training scenes. `captions.tsv` is in the",
        "format that `ms2s import caption-tsv assets/ captions.jsonl` reads.",
        "",
        "| file | caption | background |",
        "|---|---|---|",
        *(f"| `{n}` | {c} | {b} |" for n, c, b in scenes),
        "",
        "## Pasted photos (`photo_captions.tsv`: file, caption)",
        "",
        "Real photographs with one Tux Paint stamp pasted in, as a person would in an image",
        f"editor ({IMAGE_SIZE} x {IMAGE_SIZE} pixels, JPEG): the photo's centre square, resized,",
        "and the object's stamp pasted with its own alpha at a place and size chosen by hand",
        "(`multimodal_s2s/corpora/scenes/photo_paste.py`). The photos come from a Debian",
        "wallpaper package the scene corpus never trains on. The caption is the object alone,",
        "in the scene grammar; `recipes/scenes_captioning/run.sh` captions these files.",
        "",
        "| file | caption | photo (Debian package: file) | stamp (in `tuxpaint-stamps-default`) "
        "| stamp centre (x, y) | stamp's longer side |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{n}` | {c} | `{p.package}`: `{p.photo}` | "
            f"`{s.relative_to(DEFAULT_STAMP_ROOT)}` | {p.centre} | {p.side} px |"
            for n, c, p, s in photos
        ),
        "",
        "## Made with",
        "",
        *(f"- {kind} `{name}` {version}" for kind, name, version in versions),
        "",
    ]
    return "\n".join(lines)


def make_assets(folder: Path) -> list[Path]:
    """Write every file of the assets folder into ``folder``; the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    recordings = write_recordings(folder)
    scenes = write_scenes(folder)
    photos = write_photos(folder)
    tables = {
        "transcripts.tsv": "".join(f"{n}\t{t}\n" for n, t, _, _ in recordings),
        "captions.tsv": "".join(f"{n}\t{c}\n" for n, c, _ in scenes),
        "photo_captions.tsv": "".join(f"{n}\t{c}\n" for n, c, _, _ in photos),
        "README.md": readme(recordings, scenes, photos, package_versions()),
    }
    for name, text in tables.items():
        _write_bytes(folder / name, text.encode())
    files = [name for name, *_ in recordings + scenes + photos]
    return [folder / name for name in files] + [folder / name for name in tables]


def _wav_bytes(audio: np.ndarray) -> bytes:
    encoded = io.BytesIO()
    soundfile.write(encoded, audio, augment.SAMPLE_RATE, "PCM_16", format="WAV")
    return encoded.getvalue()


def _write_bytes(path: Path, content: bytes) -> None:
    """Write ``content`` unless the file already holds it (keeps its modification time)."""
    if not path.is_file() or path.read_bytes() != content:
        path.write_bytes(content)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=ROOT / "assets")
    args = parser.parse_args(argv)
    try:
        written = make_assets(args.out_dir)
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    total = sum(path.stat().st_size for path in written)
    print(f"{len(written)} files, {total} bytes in {args.out_dir}")


if __name__ == "__main__":
    main()
