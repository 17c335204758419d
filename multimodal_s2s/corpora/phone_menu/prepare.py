"""Build the phone-menu speech corpus: synthesise, augment, write wavs and JSON Lines manifests.

    python -m multimodal_s2s.corpora.phone_menu.prepare OUT_DIR [--seed 0] [--num-train 7000]
        [--texts SENTENCES.txt]

``--texts`` speaks a file's sentences (a real corpus's training transcripts, say) with the
training voices instead of generated phone-menu sentences.

Layout under OUT_DIR: ``wav/<split>/<voice>/<id>-<hash>.wav`` (16 kHz mono 16-bit) and the
manifests ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (held-out TTS voices),
``test_real_letters.jsonl`` and ``test_real_digits.jsonl`` (packaged human recordings), one
``{"audio", "text", "duration", "voice", "id"}`` object a line.

Everything is planned from the seed in this process; workers only render. A wav's name holds
a hash of everything that determines its content, so a re-run with the same seed and
settings finds every file and rewrites nothing (manifests are rewritten only if they change).
"""

import argparse
import hashlib
import json
import random
import tempfile
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.corpora.phone_menu import augment
from multimodal_s2s.corpora.phone_menu.real import (
    Recording,
    klettres_letters,
    pocketsphinx_digits,
    read_recording,
)
from multimodal_s2s.corpora.phone_menu.text import generate_sentences
from multimodal_s2s.corpora.phone_menu.voices import (
    Speech,
    Voice,
    available_voices,
    split_voices,
)
from multimodal_s2s.errors import InputError

_FORMAT_VERSION = 1  # bump when rendering changes, so cached wavs are not reused
SPLITS = ("train", "dev", "test", "test_real_letters", "test_real_digits")
_JOBS_PER_TASK = 16  # jobs of one voice a worker synthesises together (festival: one process)


@dataclass(frozen=True)
class AugmentConfig:
    """Randomisation of the synthetic audio; eval splits use only speed, pitch and padding."""

    speed_range: tuple[float, float] = (0.8, 1.3)
    pitch_range: tuple[float, float] = (0.85, 1.2)
    telephone_prob: float = 0.3
    noise_prob: float = 0.5
    snr_db_range: tuple[float, float] = (5.0, 30.0)
    pad_s_range: tuple[float, float] = (0.05, 0.3)
    peak_range: tuple[float, float] = (0.3, 0.95)


@dataclass(frozen=True)
class _Job:
    """Everything that determines one synthetic wav."""

    id: str
    text: str
    voice: Voice
    speed: float
    pitch: float
    telephone: bool
    noise: str | None
    snr_db: float
    pad_s: tuple[float, float]
    peak: float
    seed: int

    def relative_path(self) -> Path:
        fields = json.dumps([_FORMAT_VERSION, asdict(self)], sort_keys=True)
        digest = hashlib.sha1(fields.encode()).hexdigest()[:10]
        split = self.id.split("-", 1)[0]
        return Path("wav", split, self.voice.id, f"{self.id}-{digest}.wav")


def prepare_corpus(
    out_dir: Path,
    seed: int = 0,
    num_train: int = 7000,
    num_dev: int = 300,
    num_test_per_voice: int = 250,
    jobs: int = 2,
    voices: list[Voice] | None = None,
    config: AugmentConfig = AugmentConfig(),
    progress: bool = True,
    train_texts: list[str] | None = None,
) -> dict[str, Path]:
    """Synthesise the corpus into ``out_dir``; returns split name -> manifest path.

    ``voices`` defaults to every installed voice (``available_voices()``); they are split into
    train / dev / test voices by ``split_voices``. Train audio is augmented (telephone band,
    noise); dev and test are clean apart from speed, pitch and silence padding.
    ``train_texts`` replaces the generated phone-menu sentences of the train split: text
    ``i % len(train_texts)`` is spoken by the ``i``-th training job, so ``num_train`` a
    multiple of their number speaks each that many times (TTS augmentation of a real corpus).
    """
    out_dir = Path(out_dir).resolve()
    split_to_voices = split_voices(available_voices() if voices is None else voices)
    counts = {
        "train": num_train,
        "dev": num_dev,
        "test": num_test_per_voice * len(split_to_voices["test"]),
    }
    planned = {
        split: _plan_split(
            split,
            count,
            split_to_voices[split],
            config,
            seed,
            train_texts if split == "train" else None,
        )
        for split, count in counts.items()
    }
    todo = [job for plan in planned.values() for job in plan if not _exists(out_dir, job)]
    _render_all(todo, out_dir, jobs, progress)
    entries = {
        split: [_entry(out_dir / job.relative_path(), job.text, job.voice.id, job.id) for job in js]
        for split, js in planned.items()
    }
    entries["test_real_letters"] = _convert_real(klettres_letters(), out_dir)
    entries["test_real_digits"] = _convert_real(pocketsphinx_digits(), out_dir)
    return {split: _write_manifest(out_dir / f"{split}.jsonl", entries[split]) for split in SPLITS}


def _plan_split(
    split: str,
    count: int,
    voices: list[Voice],
    config: AugmentConfig,
    seed: int,
    given_texts: list[str] | None = None,
) -> list[_Job]:
    """Draw ``count`` jobs of ``split`` (texts, voices, augmentation); each split has its own
    random stream, so changing one split's size leaves the others unchanged. The texts are
    generated phone-menu sentences, or ``given_texts`` in turn when there are any."""
    rng = random.Random(f"{seed}-{split}")
    text_seed = rng.random()
    if given_texts:
        texts = [given_texts[index % len(given_texts)] for index in range(count)]
    else:
        texts = generate_sentences(random.Random(text_seed), count)
    augmented = split == "train"
    plan = []
    for index, text in enumerate(texts):
        telephone = augmented and rng.random() < config.telephone_prob
        noisy = augmented and rng.random() < config.noise_prob
        plan.append(
            _Job(
                id=f"{split}-{index:05d}",
                text=text,
                voice=voices[rng.randrange(len(voices))],
                speed=round(rng.uniform(*config.speed_range), 3),
                pitch=round(rng.uniform(*config.pitch_range), 3),
                telephone=telephone,
                noise=rng.choice(augment.NOISE_KINDS) if noisy else None,
                snr_db=round(rng.uniform(*config.snr_db_range), 1) if noisy else 0.0,
                pad_s=(
                    round(rng.uniform(*config.pad_s_range), 3),
                    round(rng.uniform(*config.pad_s_range), 3),
                ),
                peak=round(rng.uniform(*config.peak_range), 3),
                seed=rng.randrange(2**31),
            )
        )
    return plan


def _exists(out_dir: Path, job: _Job) -> bool:
    return (out_dir / job.relative_path()).is_file()


def _render_all(todo: list[_Job], out_dir: Path, jobs: int, progress: bool) -> None:
    if not todo:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc="synthesising", unit="utt", disable=not progress)
    tasks = [(group, out_dir) for group in group_by_voice(todo)]
    if jobs <= 1:
        for task in tasks:
            bar.update(_render(task))
    else:
        with Pool(jobs, initializer=_init_worker) as pool:
            for count in pool.imap_unordered(_render, tasks):
                bar.update(count)
    bar.close()


def group_by_voice(todo: list[_Job], size: int = _JOBS_PER_TASK) -> list[list[_Job]]:
    """``todo`` in groups of at most ``size`` jobs of one voice, in first-seen order."""
    by_voice: dict[Voice, list[_Job]] = {}
    for job in todo:
        by_voice.setdefault(job.voice, []).append(job)
    return [
        js[start : start + size] for js in by_voice.values() for start in range(0, len(js), size)
    ]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _render(task: tuple[list[_Job], Path]) -> int:
    """Synthesise one voice's jobs together (``Voice.synthesize_many``), then resample, pad,
    augment and atomically write each job's wav. Returns the number of jobs."""
    jobs, out_dir = task
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        raw_paths = [Path(scratch) / f"{index}.wav" for index in range(len(jobs))]
        jobs[0].voice.synthesize_many(
            [Speech(job.text, raw, job.speed, job.pitch) for job, raw in zip(jobs, raw_paths)]
        )
        for job, raw_path in zip(jobs, raw_paths):
            _augment_and_write(job, *read_recording(raw_path), out_dir / job.relative_path())
    return len(jobs)


def _augment_and_write(job: _Job, audio: np.ndarray, rate: int, path: Path) -> None:
    audio = augment.resample(audio, rate)
    audio = np.pad(audio, [round(s * augment.SAMPLE_RATE) for s in job.pad_s])
    if job.telephone:
        audio = augment.telephone_band(audio)
    if job.noise:
        noise = augment.make_noise(job.noise, len(audio), np.random.default_rng(job.seed))
        audio = augment.add_noise(audio, noise, job.snr_db)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(path, augment.normalize_peak(audio, job.peak))


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with atomic_write(path, binary=True) as file:
        sf.write(file, np.clip(audio, -1.0, 1.0), augment.SAMPLE_RATE, "PCM_16", format="WAV")


def _convert_real(recordings: list[Recording], out_dir: Path) -> list[dict]:
    entries = []
    for recording in recordings:
        path = out_dir / "wav" / "real" / recording.voice / f"{recording.id}.wav"
        if not path.is_file():
            try:
                audio, rate = read_recording(recording.path)
            except (RuntimeError, sf.LibsndfileError) as error:
                raise InputError(f"cannot read recording {recording.path}: {error}") from error
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_wav(path, augment.resample(audio, rate))
        entries.append(_entry(path, recording.text, recording.voice, recording.id))
    return entries


def _entry(path: Path, text: str, voice: str, utterance_id: str) -> dict:
    duration = round(sf.info(path).frames / augment.SAMPLE_RATE, 4)
    return {
        "audio": str(path),
        "text": text,
        "duration": duration,
        "voice": voice,
        "id": utterance_id,
    }


def _write_manifest(path: Path, entries: list[dict]) -> Path:
    content = "".join(json.dumps(entry) + "\n" for entry in entries)
    if not path.is_file() or path.read_text() != content:
        with atomic_write(path) as file:
            file.write(content)
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; prints each manifest and its utterance count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=7000)
    parser.add_argument("--num-dev", type=int, default=300)
    parser.add_argument("--num-test-per-voice", type=int, default=250)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--texts",
        type=Path,
        help="a text file of training sentences (one a line) to speak instead of generated ones",
    )
    args = parser.parse_args(argv)
    manifests = prepare_corpus(
        args.out_dir,
        args.seed,
        args.num_train,
        args.num_dev,
        args.num_test_per_voice,
        args.jobs,
        train_texts=_read_texts(args.texts) if args.texts else None,
    )
    for split, manifest in manifests.items():
        count = sum(1 for _ in manifest.open())
        print(f"{split}: {count} utterances in {manifest}")


def _read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise SystemExit(f"error: {path}: text file not found")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if not any(texts):
        raise SystemExit(f"error: {path}: no sentences")
    return [text for text in texts if text]


if __name__ == "__main__":
    main()
