"""Recordings of several phrases: what ``ms2s transcribe`` gains by cutting them at pauses.

Joins the utterances of a manifest (drawn with a seed) into recordings of 2 to 6 phrases:
each phrase trimmed to 0.1 s of silence on either side, 0.2 to 0.6 s of silence between
phrases, and every second recording mixed with alsa-utils' recorded noise at 20 dB SNR.
Transcribes them with a checkpoint twice, cut at pauses (``transcribe``'s default) and cut
only at the chunk limit (``min_pause_seconds=0``), and prints the WER (jiwer) of each:

    python recipes/phone_menu_asr/multi_phrase.py --model exp/phone_menu_asr/best.pt \
        --manifest cache/phone_menu/test.jsonl --out exp/phone_menu_asr/multi_phrase
"""

import argparse
import json
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import torch

from multimodal_s2s.corpora.phone_menu.augment import SAMPLE_RATE, add_noise, make_noise
from multimodal_s2s.data.manifest import read_manifest, write_manifest
from multimodal_s2s.data.pauses import split_at_pauses
from multimodal_s2s.frontends.features import frame_levels_db
from multimodal_s2s.inference.transcribe import transcribe

MARGIN_SECONDS = 0.1
TRIM_BELOW_PEAK_DB = 40.0
NO_PAUSE_CUTS = {"min_pause_seconds": 0.0}


def trim(audio: np.ndarray, rate: int) -> np.ndarray:
    """``(T,)`` audio cut to ``MARGIN_SECONDS`` around its 10 ms frames that are within
    ``TRIM_BELOW_PEAK_DB`` of its loudest."""
    frame = rate // 100
    level = frame_levels_db(torch.from_numpy(audio), frame).numpy()
    loud = np.flatnonzero(level > level.max() - TRIM_BELOW_PEAK_DB)
    margin = round(MARGIN_SECONDS * rate)
    return audio[max(0, loud[0] * frame - margin) : (loud[-1] + 1) * frame + margin]


def make_recordings(manifest: Path, folder: Path, count: int, seed: int) -> list[dict]:
    """Write ``count`` multi-phrase wav files into ``folder``; returns their records
    ``{"audio", "text", "phrases", "noisy"}``."""
    utterances = read_manifest(manifest)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        picks = rng.choice(len(utterances), size=rng.integers(2, 7), replace=False)
        pieces = []
        for position, pick in enumerate(picks):
            audio, rate = sf.read(utterances[pick]["audio"], dtype="float32")
            if rate != SAMPLE_RATE or audio.ndim != 1:
                raise ValueError(f"{utterances[pick]['audio']}: expected mono {SAMPLE_RATE} Hz")
            if position:
                pieces.append(np.zeros(round(rng.uniform(0.2, 0.6) * rate), np.float32))
            pieces.append(trim(audio, rate))
        recording = np.concatenate(pieces)
        noisy = index % 2 == 1
        if noisy:
            recording = add_noise(recording, make_noise("alsa", len(recording), rng), 20.0)
        path = folder / f"recording-{index:03d}.wav"
        sf.write(path, recording, SAMPLE_RATE)
        text = " ".join(utterances[pick]["text"] for pick in picks)
        records.append({"audio": str(path), "text": text, "phrases": len(picks), "noisy": noisy})
    return records


def count_chunks(records: list[dict]) -> dict[str, float]:
    """The share of clean and of noisy recordings that ``split_at_pauses`` cuts into exactly
    their phrases."""
    shares = {}
    for noisy, name in ((False, "clean"), (True, "noisy")):
        chosen = [r for r in records if r["noisy"] == noisy]
        exact = 0
        for record in chosen:
            audio, rate = sf.read(record["audio"], dtype="float32")
            exact += len(split_at_pauses(torch.from_numpy(audio), rate)) == record["phrases"]
        shares[name] = exact / max(1, len(chosen))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = make_recordings(args.manifest, args.out / "recordings", args.recordings, args.seed)
    write_manifest(records, args.out / "recordings.jsonl")
    results: dict = {"cut into exactly their phrases": count_chunks(records)}
    print("share cut into exactly their phrases:", results["cut into exactly their phrases"])
    for name, options in (("cut at pauses", {}), ("cut at the chunk limit", NO_PAUSE_CUTS)):
        output = args.out / f"{name.replace(' ', '_')}.jsonl"
        transcribe(args.model, [record["audio"] for record in records], output, **options)
        texts = {h["audio"]: h["text"] for h in map(json.loads, output.read_text().splitlines())}
        results[name] = {}
        for noisy, subset in ((False, "clean"), (True, "noisy"), (None, "all")):
            chosen = [r for r in records if noisy is None or r["noisy"] == noisy]
            wer = jiwer.wer([r["text"] for r in chosen], [texts[r["audio"]] for r in chosen])
            results[name][subset] = wer
        print(f"{name}:", ", ".join(f"{k} WER {100 * v:.1f}%" for k, v in results[name].items()))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
