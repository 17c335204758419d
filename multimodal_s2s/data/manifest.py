"""JSON Lines manifests (one utterance per line) and importers from corpus layouts.

A record is ``{"audio": path, "text": transcript, "duration": seconds, ...}``; extra keys
are kept. ``IMPORTERS`` names the corpus layouts ``ms2s import`` reads (Kaldi data directories,
LibriSpeech trees, the Free Spoken Digit Dataset).
"""

import json
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from multimodal_s2s.atomic_file import atomic_write, check_writable
from multimodal_s2s.data.audio import audio_duration
from multimodal_s2s.errors import InputError

# A speaker this old or older (a record's ``"age"``, from ``spk2age``) counts as an adult
# where results or splits are by age group (children under it).
ADULT_AGE = 18


def read_manifest(
    path: str | Path, source_key: str | None = "audio", text_key: str = "text"
) -> list[dict]:
    """Read a JSON Lines manifest; blank lines are skipped.

    Relative ``source_key`` paths are resolved against the manifest's directory.
    ``source_key`` and ``text_key`` let other modalities share the format (captions use
    ``"image"`` and ``"caption"``); ``source_key`` ``None`` reads the texts alone (a
    language model's training text), whatever the sources are.

    Raises:
        InputError: the file is missing, or a line (named ``file:line``) is not a JSON
            object, lacks ``source_key`` or ``text_key``, or has a non-string value for them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    records = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                keys = (text_key,) if source_key is None else (source_key, text_key)
                record = _parse_record(line, f"{path}:{line_number}", keys)
                if source_key is not None:
                    record[source_key] = str(path.parent / record[source_key])
                records.append(record)
    return records


def _parse_record(line: str, where: str, keys: tuple[str, ...]) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: invalid JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object")
    for key in keys:
        if key not in record:
            raise InputError(f"{where}: missing key '{key}'")
        if not isinstance(record[key], str):
            raise InputError(f"{where}: '{key}' must be a string")
    return record


def write_manifest(records: Iterable[dict], path: str | Path) -> None:
    """Write records as JSON Lines atomically (temp file in the same directory, then
    ``os.replace``), creating the parent directory. ``Path`` values become strings."""
    with atomic_write(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


@contextmanager
def collected_records(path: str | Path | None) -> Iterator[list[dict]]:
    """A list for a batch command's result records, written to ``path`` by
    ``write_manifest`` when the block ends (nothing is written for ``None``).

    If Ctrl-C or an error interrupts the block, the records collected so far go to
    ``<path>.partial`` instead (and a line on stderr says so) before the exception goes on,
    so finished work is not lost while ``path`` never holds an incomplete result.

    Raises:
        InputError: on entry, before any work, when ``path`` cannot be written
            (``check_writable``).
    """
    if path is not None:
        check_writable(path)
    records: list[dict] = []
    try:
        yield records
    except BaseException as error:
        if path is not None and records:
            partial = Path(path).with_name(Path(path).name + ".partial")
            write_manifest(records, partial)
            why = "interrupted" if isinstance(error, KeyboardInterrupt) else "stopped by an error"
            print(f"{why}: {len(records)} finished results kept in {partial}", file=sys.stderr)
        raise
    if path is not None:
        write_manifest(records, path)


def import_librispeech(root: Path) -> list[dict]:
    """Records from a LibriSpeech tree: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` with
    ``UTT-ID TEXT`` lines and ``UTT-ID.flac`` beside it, found anywhere below ``root``.

    Records are ``{"id", "audio" (absolute), "text" (lowercased), "duration", "speaker"}``,
    in sorted transcript-file order.

    Raises:
        InputError: ``root`` is missing or has no transcripts, a transcript line is
            malformed (named ``file:line``), or an audio file is missing or unreadable.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: LibriSpeech directory not found")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise InputError(f"{root}: no *.trans.txt transcripts found")
    records = []
    for transcript in transcripts:
        for utterance_id, (_, text) in _read_keyed_lines(transcript).items():
            audio = transcript.parent / f"{utterance_id}.flac"
            records.append(
                {
                    "id": utterance_id,
                    "audio": str(audio),
                    "text": text.lower(),
                    "duration": audio_duration(audio),
                    "speaker": utterance_id.split("-")[0],
                }
            )
    return records


def import_kaldi(data_dir: Path, lowercase: bool = True) -> list[dict]:
    """Records from a Kaldi data directory (``wav.scp`` and ``text``, optionally ``utt2spk``,
    ``spk2age`` and ``spk2gender``).

    Lines are ``KEY VALUE`` separated by spaces or tabs. ``wav.scp`` values are paths to audio
    files (WAV, FLAC, Ogg Vorbis or Opus, MP3). A relative path is looked up against the
    current directory (Kaldi runs from the recipe directory), then the corpus root (the data
    directory's parent: corpora that ship ``train/`` beside ``WAVE/``), then the data
    directory itself. Utterances found in only one of ``wav.scp`` and ``text`` are skipped
    with a warning. Records are ``{"id", "audio" (absolute), "text", "duration"}`` in
    ``wav.scp`` order, plus ``"speaker"``, ``"age"`` (an int where it is one) and
    ``"gender"`` when those files exist; the text is lowercased unless ``lowercase`` is
    false (LibriSpeech's importer lowercases too, so corpora mix).

    Raises:
        InputError: a file is missing, a ``segments`` file exists (recordings split into
            utterances are unsupported), a line is malformed or a piped command
            (``... |``), an audio file is not found (named with its ``wav.scp`` line), the
            two files share no utterance, or audio is unreadable.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: Kaldi data directory not found")
    if (data_dir / "segments").exists():
        raise InputError(f"{data_dir / 'segments'}: Kaldi segments files are unsupported")
    wav_scp = data_dir / "wav.scp"
    audio_paths = _read_keyed_lines(wav_scp)
    texts = _read_keyed_lines(data_dir / "text")
    _warn_unpaired(data_dir, audio_paths.keys() - texts.keys(), texts.keys() - audio_paths.keys())
    speakers = _read_optional(data_dir / "utt2spk")
    speaker_info = {name: _read_optional(data_dir / f"spk2{name}") for name in ("age", "gender")}
    records = []
    for utterance_id, (line_number, audio) in audio_paths.items():
        where = f"{wav_scp}:{line_number}"
        if audio.endswith("|"):
            raise InputError(
                f"{where}: piped command for '{utterance_id}' is unsupported; "
                "write the audio to files first"
            )
        if utterance_id not in texts:
            continue
        path = _find_kaldi_audio(data_dir, audio, where, utterance_id)
        text = texts[utterance_id][1]
        record = {
            "id": utterance_id,
            "audio": str(path),
            "text": text.lower() if lowercase else text,
            "duration": audio_duration(path),
        }
        if utterance_id in speakers:
            record.update(_speaker_fields(speakers[utterance_id], speaker_info))
        records.append(record)
    if not records:
        raise InputError(f"{data_dir}: wav.scp and text share no utterance")
    return records


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def import_fsdd(root: Path) -> list[dict]:
    """Records from the Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav`` files in
    ``root`` or its ``recordings/`` folder, each one spoken digit.

    Records are ``{"id", "audio" (absolute), "text" (the digit as a word: "zero" .. "nine"),
    "duration", "speaker"}`` in sorted file-name order.

    Raises:
        InputError: ``root`` is missing or holds no such file, or audio is unreadable.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: FSDD directory not found")
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    records = []
    for path in sorted(folder.glob("*.wav")):
        digit, speaker, index = (path.stem.split("_") + ["", "", ""])[:3]
        if not (digit.isdigit() and len(digit) == 1 and speaker and index.isdigit()):
            continue
        records.append(
            {
                "id": path.stem,
                "audio": str(path),
                "text": DIGIT_WORDS[int(digit)],
                "duration": audio_duration(path),
                "speaker": speaker,
            }
        )
    if not records:
        raise InputError(f"{folder}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav)")
    return records


def _find_kaldi_audio(data_dir: Path, audio: str, where: str, utterance_id: str) -> Path:
    """The absolute path of a ``wav.scp`` entry (lookup order in ``import_kaldi``)."""
    path = Path(audio)
    candidates = [path] if path.is_absolute() else [path, data_dir.parent / path, data_dir / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.absolute()
    raise InputError(f"{where}: audio file not found for '{utterance_id}': {audio}")


def _read_optional(path: Path) -> dict[str, str]:
    """``{key: value}`` of a ``KEY VALUE`` file, or ``{}`` when the file does not exist."""
    if not path.is_file():
        return {}
    return {key: value for key, (_, value) in _read_keyed_lines(path).items()}


def _speaker_fields(speaker: str, speaker_info: dict[str, dict[str, str]]) -> dict:
    """``{"speaker", "age", "gender"}`` of one speaker (``age`` and ``gender`` where known)."""
    fields: dict = {"speaker": speaker}
    for name, values in speaker_info.items():
        value = values.get(speaker)
        if value is not None:
            fields[name] = int(value) if value.isdigit() else value
    return fields


def _read_keyed_lines(path: Path) -> dict[str, tuple[int, str]]:
    """``KEY VALUE`` lines (blank lines skipped) as an ordered ``{key: (line number, value)}``;
    the value may contain spaces and must not be empty."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    entries: dict[str, tuple[int, str]] = {}
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise InputError(f"{path}:{line_number}: expected 'KEY VALUE', got '{fields[0]}'")
            if fields[0] in entries:
                raise InputError(f"{path}:{line_number}: duplicate key '{fields[0]}'")
            entries[fields[0]] = (line_number, fields[1])
    return entries


def _warn_unpaired(data_dir: Path, no_text: set[str], no_audio: set[str]) -> None:
    for ids, missing in ((no_text, "text"), (no_audio, "wav.scp")):
        if ids:
            examples = ", ".join(sorted(ids)[:3])
            warnings.warn(
                f"{data_dir}: skipping {len(ids)} utterance(s) missing from {missing} "
                f"(e.g. {examples})",
                stacklevel=3,
            )


IMPORTERS = {"librispeech": import_librispeech, "kaldi": import_kaldi, "fsdd": import_fsdd}
