"""Batched beam search vs the same search run one source at a time.

Same model, same inputs, same process: checks that the n-best lists are identical and
reports the speed ratio (best of ``--repeats`` alternating runs of each, so a passing load
on the machine affects both alike). Run: ``python benchmarks/beam_search_speed.py``.
"""

import argparse
import json
import os
import platform
import time

import torch

from multimodal_s2s.config import load_config
from multimodal_s2s.data.text import EOS_ID
from multimodal_s2s.model import build_model
from multimodal_s2s.search import beam_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=32)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--eos-bias", type=float, default=3.0, help="sets typical output length")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="best of N alternating runs")
    parser.add_argument(
        "overrides", nargs="*", help="model config overrides, e.g. decoder.hidden_dim=128"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
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
    with torch.no_grad():
        encoded = model.encode(features, lengths)
        alone = [
            model.encode(features[i : i + 1, : lengths[i]], lengths[i : i + 1])
            for i in range(args.sources)
        ]
        beam_search(model, encoded, config.search)  # warm-up
        batched_s, looped_s = float("inf"), float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            batched = beam_search(model, encoded, config.search)
            batched_s = min(batched_s, time.perf_counter() - start)
            start = time.perf_counter()
            looped = [beam_search(model, one, config.search)[0] for one in alone]
            looped_s = min(looped_s, time.perf_counter() - start)

    identical = all(
        [h.tokens for h in b] == [h.tokens for h in s]
        and all(abs(x.score - y.score) <= 1e-5 for x, y in zip(b, s))
        for b, s in zip(batched, looped)
    )
    result = {
        "sources": args.sources,
        "beam": args.beam,
        "mean_output_tokens": sum(len(n[0].tokens) for n in batched) / args.sources,
        "batched_s": round(batched_s, 3),
        "one_at_a_time_s": round(looped_s, 3),
        "speedup": round(looped_s / batched_s, 2),
        "identical_outputs": identical,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "overrides": args.overrides,
    }
    print(json.dumps(result, indent=2))
    if not identical:
        raise SystemExit("batched and one-at-a-time outputs differ")


if __name__ == "__main__":
    main()
