"""Captioning throughput: batched beam search vs the same search one image at a time.

Same trained checkpoint, same preloaded images (the first ``--num-images`` of a split of the
checkpoint's data, read and resized before timing), same process. Times ``decode_batch``
(encoder + beam search + detokenisation), best of ``--repeats`` alternating runs of each mode,
and reports images per second and their ratio; exits non-zero unless both modes give the same
captions. Run: ``python benchmarks/caption_throughput.py --model exp/scenes_captioning/best.pt``,
optionally followed by ``search.KEY=VALUE`` and ``data.test_views.KEY=VALUE`` changes to the
checkpoint's settings (as ``ms2s caption`` takes them), e.g. ``search.cpu_bfloat16=false``.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import date

import torch
from machine import describe
from torch import Tensor

from multimodal_s2s.allocator import reuse_freed_memory
from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import DECODING_SECTIONS, decoding_config
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.devices import full_float32_on_cuda, resolve_device
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.search.decode import decode_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="image captioning checkpoint")
    parser.add_argument("--split", default="test", help="split of the checkpoint's data")
    parser.add_argument("--manifest", help="an image manifest to read as --split instead")
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--beam", type=int, help="default: the checkpoint's")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=2, help="best of N alternating runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--output", help="also write the result as JSON to this file")
    parser.add_argument("overrides", nargs="*", help="search.KEY=VALUE, data.test_views.KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    full_float32_on_cuda()
    reuse_freed_memory()  # as the ms2s command line does
    model, tokenizer, config = load_model(args.model, device)
    config = decoding_config(config, args.overrides, DECODING_SECTIONS, args.beam)
    search, views = config.search, decoding_views(config.data)
    if args.manifest:
        config.data.test = {args.split: args.manifest}
    images = _load_images(config, args.split, args.num_images).to(device)

    def caption(batch: Tensor) -> list[str]:
        return [d.text for d in decode_batch(model, tokenizer, batch, None, search, views=views)]

    def batched() -> list[str]:
        return sum((caption(chunk) for chunk in images.split(args.batch_size)), [])

    def one_at_a_time() -> list[str]:
        return sum((caption(image) for image in images.split(1)), [])

    timings: dict[str, list[float]] = {"batched": [], "one_at_a_time": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in (("batched", batched), ("one_at_a_time", one_at_a_time)):
            seconds, outputs[name] = _timed(run)
            timings[name].append(seconds)
    same = outputs["batched"] == outputs["one_at_a_time"]
    rates = {name: len(images) / min(seconds) for name, seconds in timings.items()}
    result = {
        "date": date.today().isoformat(),
        "threads": torch.get_num_threads(),
        **describe(device),
        "images": len(images),
        "beam": search.beam_size,
        "batch_size": args.batch_size,
        "cpu_bfloat16": search.cpu_bfloat16,
        "batched_images_per_s": rates["batched"],
        "one_at_a_time_images_per_s": rates["one_at_a_time"],
        "speedup": rates["batched"] / rates["one_at_a_time"],
        "same_captions": same,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as file:
            file.write(text + "\n")
    if not same:
        sys.exit("batched and one-at-a-time captions differ")


def _load_images(config, split: str, count: int) -> Tensor:
    """The first ``count`` evaluation images of ``split``: ``(N, 3, S, S)``."""
    data = build_source(config.data)
    batches = []
    for batch in data.batches(split, train=False, batch_size=min(count, 256)):
        batches.append(batch.sources)
        if sum(len(b) for b in batches) >= count:
            break
    return torch.cat(batches)[:count]


def _timed(run: Callable[[], list[str]]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    captions = run()
    return time.perf_counter() - started, captions


if __name__ == "__main__":
    main()
