"""Batched beam search vs the same search run one source at a time.

Same model, same inputs, same process: checks that the n-best lists are identical and
reports the speed ratio (best of ``--repeats`` alternating runs of each, so a passing load
on the machine affects both alike). Run: ``python benchmarks/beam_search_speed.py``.

``--lm``: both modes fuse a random LSTM language model (``ms2s train-lm``'s default size,
2 x 512; ``--lm-hidden`` another width) at ``search.lm_weight`` 0.5, as ``search.lm`` does,
and the batched search is also timed without it: ``lm_cost_ratio`` is the batched time with
the LM over the time without.
"""

import argparse
import json
import time

import torch
from machine import describe

from multimodal_s2s.allocator import reuse_freed_memory
from multimodal_s2s.config import load_config
from multimodal_s2s.devices import full_float32_on_cuda, resolve_device
from multimodal_s2s.models.language_model import LanguageModelConfig, LSTMLanguageModel
from multimodal_s2s.models.model import build_model
from multimodal_s2s.search.beam import beam_search
from multimodal_s2s.search.fusion import LanguageModelScorer
from multimodal_s2s.text import EOS_ID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=32)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--eos-bias", type=float, default=3.0, help="sets typical output length")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="best of N alternating runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--lm", action="store_true", help="fuse a random LSTM LM (see above)")
    parser.add_argument("--lm-hidden", type=int, default=LanguageModelConfig.hidden_dim)
    parser.add_argument(
        "overrides", nargs="*", help="model config overrides, e.g. decoder.hidden_dim=128"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    full_float32_on_cuda()
    reuse_freed_memory()  # as the ms2s command line does
    config = load_config(
        None,
        [
            "encoder.num_layers=3",
            "decoder.hidden_dim=256",
            f"search.beam_size={args.beam}",
            "search.nbest=1",
            "search.max_length_ratio=1.5",
            *args.overrides,
        ],
    )
    model = build_model(config, args.vocab).eval()
    with torch.no_grad():
        model.generator.projection.weight.mul_(3.0)
        model.generator.projection.bias[EOS_ID] += args.eos_bias
    lengths = torch.randint(200, 801, (args.sources,))
    features = torch.randn(args.sources, int(lengths.max()), config.encoder.input_dim)
    dtype = getattr(torch, args.dtype)
    model, features = model.to(device, dtype), features.to(device, dtype)
    lengths = lengths.to(device)
    lm_config = LanguageModelConfig(hidden_dim=args.lm_hidden)
    lm = LSTMLanguageModel(lm_config, args.vocab).to(device, dtype).eval() if args.lm else None

    def search(encoded, fused=args.lm):
        scorer = None
        if fused:
            scorer = LanguageModelScorer(lm, encoded.lengths.numel() * args.beam, 0.5)
        return beam_search(model, encoded, config.search, scorer)

    with torch.no_grad():
        encoded = model.encode(features, lengths)
        alone = [
            model.encode(features[i : i + 1, : lengths[i]], lengths[i : i + 1])
            for i in range(args.sources)
        ]
        search(encoded)  # warm-up
        batched_s, looped_s, plain_s = float("inf"), float("inf"), float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            batched = search(encoded)
            batched_s = min(batched_s, time.perf_counter() - start)
            if args.lm:
                start = time.perf_counter()
                plain = search(encoded, fused=False)
                plain_s = min(plain_s, time.perf_counter() - start)
            start = time.perf_counter()
            looped = [search(one)[0] for one in alone]
            looped_s = min(looped_s, time.perf_counter() - start)

    differing = []
    for index, (b, s) in enumerate(zip(batched, looped)):
        same_tokens = [h.tokens for h in b] == [h.tokens for h in s]
        if not same_tokens or any(abs(x.score - y.score) > 1e-5 for x, y in zip(b, s)):
            differing.append(
                {
                    "source": index,
                    "output_tokens": [len(h.tokens) for h in (b[0], s[0])],
                    "same_tokens": same_tokens,
                    "scores": [b[0].score, s[0].score],
                }
            )
    identical = not differing
    result = {
        "sources": args.sources,
        "beam": args.beam,
        "mean_output_tokens": sum(len(n[0].tokens) for n in batched) / args.sources,
        "batched_s": round(batched_s, 3),
        "one_at_a_time_s": round(looped_s, 3),
        "speedup": round(looped_s / batched_s, 2),
        **(
            {
                "without_lm_batched_s": round(plain_s, 3),
                "without_lm_mean_output_tokens": sum(len(n[0].tokens) for n in plain)
                / args.sources,
                "lm_cost_ratio": round(batched_s / plain_s, 2),
                "lm": vars(lm_config),
            }
            if args.lm
            else {}
        ),
        "identical_outputs": identical,
        "differing_sources": differing,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        **describe(device),
        "overrides": args.overrides,
    }
    print(json.dumps(result, indent=2))
    if not identical:
        raise SystemExit("batched and one-at-a-time outputs differ")


if __name__ == "__main__":
    main()
