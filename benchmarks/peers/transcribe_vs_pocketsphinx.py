"""Transcription: this project's ``Transcriber`` with a trained checkpoint against
pocketsphinx, on the same real recordings, one process, alternating; real-time factor and
word error rate of both.

Recordings: FSDD (every recording, or ``--limit`` spread evenly over them) and the
speechocean762 test set, read once with the project's audio loader as 16 kHz waveforms
before any timing. Each side gets the same waveforms: this project's ``Transcriber``
(``--model``, decoded with its saved settings, changed by ``--setting key=value``: beam,
CTC weight, test-time views), and pocketsphinx 5's default US English decoder (its acoustic
model, trigram language model and dictionary as the package ships them; the user gives no
grammar), one recording at a time (``process_raw`` of the whole utterance as 16-bit samples)
on one thread, which is all it uses. The recordings are dealt into ``--repeats`` blocks
(recording ``i`` into block ``i mod repeats``, so each block is a like mix of speakers and
words); the sides take turns block by block, in alternating order, after a warm-up on two
recordings. Real-time factor: seconds of processing per second of audio, over all blocks;
``ms2s_times_as_fast``: pocketsphinx's seconds over this project's, overall, and the median
of the blocks' ratios. Both sides' transcripts and the corpus references are normalised
alike (lower case, digits as words, no punctuation: ``common.normalise_text``) before the
word error rate is counted. Run:
``python benchmarks/peers/transcribe_vs_pocketsphinx.py --model exp/speechocean762_asr/best.pt``.
"""

import argparse
import statistics

import yaml
from common import (
    add_common_arguments,
    alternate,
    corpus_folder,
    evenly_spaced,
    normalise_text,
    profile,
    report,
    run_in_peers_venv,
    spread,
    with_threads,
)

run_in_peers_venv("pocketsphinx")

from pocketsphinx import Decoder  # noqa: E402

from multimodal_s2s.allocator import reuse_freed_memory  # noqa: E402
from multimodal_s2s.data.audio import load_audio  # noqa: E402
from multimodal_s2s.data.manifest import import_fsdd, import_kaldi  # noqa: E402
from multimodal_s2s.inference.transcribe import Transcriber  # noqa: E402
from multimodal_s2s.metrics import word_error_rate  # noqa: E402

RATE = 16000
CORPORA = {
    "fsdd": lambda: import_fsdd(corpus_folder("fsdd")),
    "speechocean762": lambda: import_kaldi(corpus_folder("speechocean762") / "test"),
}


def pocketsphinx_decoder():
    """Transcribes a list of 16 kHz float waveforms, one utterance each."""
    decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def transcribe(pcms: list[bytes]) -> list[str]:
        texts = []
        for pcm in pcms:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            texts.append(hypothesis.hypstr if hypothesis is not None else "")
        return texts

    return transcribe


def corpus_result(records, waves, seconds, outputs, threads, repeats):
    """WER of both sides and their times over one corpus's blocks."""
    audio_s = [sum(len(w) for w in waves[index::repeats]) / RATE for index in range(repeats)]

    def in_order(blocks):  # block outputs back in recording order
        texts = [""] * len(records)
        for index, block in enumerate(blocks):
            texts[index::repeats] = block
        return texts

    references = [normalise_text(record["text"]) for record in records]
    hypotheses = {side: in_order(blocks) for side, blocks in outputs.items()}
    ours = f"ms2s_{threads[0]}"

    def timing(side):
        return {
            "seconds": round(sum(seconds[side]), 3),
            "real_time_factor": round(sum(seconds[side]) / sum(audio_s), 4),
            "block_real_time_factors": spread(
                [s / a for s, a in zip(seconds[side], audio_s)], unit=""
            ),
        }

    return {
        "recordings": len(records),
        "audio_s": round(sum(audio_s), 1),
        "wer_percent": {
            "ms2s": round(100 * word_error_rate(references, hypotheses[ours]), 2),
            "pocketsphinx": round(100 * word_error_rate(references, hypotheses["pocketsphinx"]), 2),
        },
        "ms2s_same_text_at_every_thread_count": all(
            hypotheses[f"ms2s_{n}"] == hypotheses[ours] for n in threads
        ),
        "examples": [
            {
                "reference": references[index],
                "ms2s": hypotheses[ours][index],
                "pocketsphinx": hypotheses["pocketsphinx"][index],
            }
            for index in evenly_spaced(range(len(records)), 3)
        ],
        "pocketsphinx": timing("pocketsphinx"),
        "by_threads": {
            str(n): {
                "ms2s": timing(f"ms2s_{n}"),
                "ms2s_times_as_fast": round(
                    sum(seconds["pocketsphinx"]) / sum(seconds[f"ms2s_{n}"]), 2
                ),
                "ms2s_times_as_fast_block_median": round(
                    statistics.median(
                        p / o for p, o in zip(seconds["pocketsphinx"], seconds[f"ms2s_{n}"])
                    ),
                    2,
                ),
            }
            for n in threads
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a speech checkpoint (best.pt)")
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--limit", type=int, default=0, help="recordings a corpus (0: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="this project's batch")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a decoding setting of Transcriber.from_checkpoint, e.g. beam_size=4",
    )
    add_common_arguments(parser, threads=(2,))
    args = parser.parse_args()
    reuse_freed_memory()  # as the ms2s command line does
    settings = {}
    for setting in args.setting:
        key, _, value = setting.partition("=")
        settings[key] = yaml.safe_load(value)
    transcriber = Transcriber.from_checkpoint(args.model, device="cpu", **settings)
    pocketsphinx = pocketsphinx_decoder()
    corpora = {}
    for name in args.corpora:
        records = evenly_spaced(CORPORA[name](), args.limit)
        waves = [load_audio(record["audio"], RATE) for record in records]
        pcms = [(wave * 32767).round().short().numpy().tobytes() for wave in waves]
        blocks = min(args.repeats, len(records))

        def ours(index, waves=waves, blocks=blocks):
            items = [(wave, RATE) for wave in waves[index::blocks]]
            return [result.text for result in transcriber.transcribe(items, args.batch_size)]

        sides = {f"ms2s_{n}": with_threads(n, ours) for n in args.threads}
        sides["pocketsphinx"] = lambda index, pcms=pcms, blocks=blocks: pocketsphinx(
            pcms[index::blocks]
        )
        transcriber.transcribe([(wave, RATE) for wave in waves[:2]])  # warm-up
        pocketsphinx(pcms[:2])
        seconds, outputs = alternate(sides, blocks)
        if args.profile:  # this project's side only: pocketsphinx runs outside torch
            ours_sides = {
                f"{name} {side}": run for side, run in sides.items() if side != "pocketsphinx"
            }
            profile(
                ours_sides,
                args.profile.with_name(f"{args.profile.stem}.{name}{args.profile.suffix}"),
            )
        corpora[name] = corpus_result(records, waves, seconds, outputs, args.threads, blocks)
    search = transcriber.config.search
    result = {
        "benchmark": "transcription, this project's Transcriber vs pocketsphinx",
        "model": args.model,
        "decoding": {
            "beam_size": search.beam_size,
            "ctc_weight": search.ctc_weight,
            "lm": search.lm or None,
            "cpu_bfloat16": search.cpu_bfloat16,
            "test_views": transcriber.views,
            "batch_size": args.batch_size,
        },
        "pocketsphinx_threads": 1,
        "blocks": args.repeats,
        "corpora": corpora,
    }
    report(result, args.output, ["pocketsphinx"])


if __name__ == "__main__":
    main()
