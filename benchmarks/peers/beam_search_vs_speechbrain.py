"""Beam search: this project's ``search.beam.beam_search`` against SpeechBrain's
``S2SRNNBeamSearcher``, same shapes, one process, alternating runs.

Both decode the same random memory (``--sources`` x ``--frames`` x ``--memory-dim``, all
frames valid) with a randomly initialised LSTM decoder (``--hidden``) with location
attention (``--attention-dim``, 10 channels, kernel 31), embeddings of ``--embedding``,
``--vocab`` tokens and beam ``--beam``, for exactly ``--steps`` steps: the end-of-sequence
token's output bias is -1e4 in both models, so no hypothesis ends early; the script counts
the decoder steps of a first run of each and stops unless both ran ``--steps`` (this
project's search then returns ``--steps`` tokens, SpeechBrain's one fewer: it reads its last
step as the end token). Each side is as its library builds it:
this project's decoder feeds the context (``--memory-dim``) to its LSTM and output layer,
SpeechBrain's projects it to ``--attention-dim`` first. Times every ``--threads`` count.
``--precision bfloat16`` runs both searches under CPU bfloat16 autocast (what
``search.cpu_bfloat16`` does inside ``ms2s`` decoding), float32 by default.
Run: ``python benchmarks/peers/beam_search_vs_speechbrain.py`` (any python; it sets up and
re-runs itself in the peers' venv).
"""

import argparse
from contextlib import contextmanager

from common import (
    add_common_arguments,
    alternate,
    in_precision,
    profile,
    report,
    run_in_peers_venv,
    speed_ratio,
    spread,
    with_threads,
)

run_in_peers_venv("speechbrain")

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402
from speechbrain.decoders.seq2seq import S2SRNNBeamSearcher  # noqa: E402

from multimodal_s2s.allocator import reuse_freed_memory  # noqa: E402
from multimodal_s2s.config import load_config  # noqa: E402
from multimodal_s2s.models.encoders.base import EncoderOutput  # noqa: E402
from multimodal_s2s.models.model import build_model  # noqa: E402
from multimodal_s2s.search.beam import beam_search  # noqa: E402
from multimodal_s2s.text import BOS_ID, EOS_ID  # noqa: E402

NO_END = -1e4  # the end-of-sequence bias: never among the best extensions
CHANNELS, KERNEL = 10, 31


@contextmanager
def counting(owner, method: str):
    """Count the calls of ``owner.method`` inside the block (the list's length)."""
    calls, original = [], getattr(owner, method)

    def counted(*args, **kwargs):
        calls.append(None)
        return original(*args, **kwargs)

    setattr(owner, method, counted)
    try:
        yield calls
    finally:
        delattr(owner, method)


def ours(args: argparse.Namespace):
    """This project's search over its model, built from the defaults with these sizes."""
    config = load_config(
        None,
        [
            f"encoder.hidden_dim={args.memory_dim // 2}",  # bidirectional: memory_dim wide
            f"decoder.embedding_dim={args.embedding}",
            f"decoder.hidden_dim={args.hidden}",
            f"decoder.attention.dim={args.attention_dim}",
            f"decoder.attention.channels={CHANNELS}",
            f"decoder.attention.kernel_size={KERNEL}",
            "decoder.dropout=0",
            f"search.beam_size={args.beam}",
            "search.nbest=1",
            f"search.max_length={args.steps}",
            "search.max_length_ratio=1000",
        ],
    )
    model = build_model(config, args.vocab).eval()
    with torch.no_grad():
        model.generator.projection.bias[EOS_ID] = NO_END

    def search(memory):
        lengths = torch.full((memory.size(0),), memory.size(1), dtype=torch.long)
        return beam_search(model, EncoderOutput(memory, lengths), config.search)

    return search, model.decoder, "step"


def speechbrain(args: argparse.Namespace):
    """SpeechBrain's searcher over its ``AttentionalRNNDecoder`` of the same sizes."""
    embedding = sb.nnet.embedding.Embedding(args.vocab, args.embedding)
    decoder = sb.nnet.RNN.AttentionalRNNDecoder(
        rnn_type="lstm",
        attn_type="location",
        hidden_size=args.hidden,
        attn_dim=args.attention_dim,
        num_layers=1,
        enc_dim=args.memory_dim,
        input_size=args.embedding,
        channels=CHANNELS,
        kernel_size=KERNEL // 2,  # SpeechBrain's convolution is 2 k + 1 wide
        dropout=0.0,
    )
    linear = sb.nnet.linear.Linear(input_size=args.hidden, n_neurons=args.vocab)
    with torch.no_grad():
        linear.w.bias[EOS_ID] = NO_END
    searcher = S2SRNNBeamSearcher(
        embedding,
        decoder,
        linear,
        bos_index=BOS_ID,
        eos_index=EOS_ID,
        min_decode_ratio=0.0,
        # steps = int(frames * ratio): half a step more so float rounding cannot cut one
        max_decode_ratio=(args.steps + 0.5) / args.frames,
        beam_size=args.beam,
    ).eval()

    def search(memory):
        with torch.no_grad():
            return searcher(memory, torch.ones(memory.size(0)))

    return search, searcher, "forward_step"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=32)
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--memory-dim", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--attention-dim", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    add_common_arguments(parser, threads=(1, 2))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    reuse_freed_memory()  # as the ms2s command line does
    memory = torch.randn(args.sources, args.frames, args.memory_dim)
    searches = {
        name: (in_precision(search, args.precision), owner, step)
        for name, (search, owner, step) in (
            ("ms2s", ours(args)),
            ("speechbrain", speechbrain(args)),
        )
    }
    for name, (search, owner, step) in searches.items():  # also the warm-up
        with counting(owner, step) as steps:
            search(memory)
        if len(steps) != args.steps:
            raise SystemExit(f"{name} ran {len(steps)} decoder steps, not {args.steps}")
    sides = {
        f"{name}_{threads}": with_threads(threads, lambda _, search=search: search(memory))
        for threads in args.threads
        for name, (search, _, _) in searches.items()
    }
    for side in sides.values():  # a warm-up at each thread count
        side(None)
    seconds, _ = alternate(sides, args.repeats)
    if args.profile:
        profile(sides, args.profile)
    result = {
        "benchmark": "beam search, this project vs SpeechBrain S2SRNNBeamSearcher",
        "shapes": {
            key: getattr(args, key)
            for key in (
                "sources",
                "frames",
                "memory_dim",
                "hidden",
                "attention_dim",
                "embedding",
                "vocab",
                "beam",
                "steps",
            )
        },
        "decoder_steps": args.steps,
        "precision": args.precision,
        "repeats": args.repeats,
        "by_threads": {
            str(threads): {
                "ms2s": spread(seconds[f"ms2s_{threads}"]),
                "speechbrain": spread(seconds[f"speechbrain_{threads}"]),
                "ms2s_times_as_fast": speed_ratio(
                    seconds[f"speechbrain_{threads}"], seconds[f"ms2s_{threads}"]
                ),
            }
            for threads in args.threads
        },
    }
    report(result, args.output, ["speechbrain"])


if __name__ == "__main__":
    main()
