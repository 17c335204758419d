"""The ``ms2s`` command line."""

import argparse
import importlib.metadata
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from multimodal_s2s.allocator import reuse_freed_memory
from multimodal_s2s.atomic_file import atomic_write, check_writable
from multimodal_s2s.checkpoint import convert_checkpoint, load_model
from multimodal_s2s.config import decoding_config, load_config
from multimodal_s2s.data.caption_import import CAPTION_IMPORTERS
from multimodal_s2s.data.files import add_nbest_argument
from multimodal_s2s.data.manifest import IMPORTERS, write_manifest
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.devices import full_float32_on_cuda, resolve_device
from multimodal_s2s.errors import InputError, TrainingError, one_line
from multimodal_s2s.inference.caption import add_caption_command
from multimodal_s2s.inference.export import add_export_command
from multimodal_s2s.inference.transcribe import add_transcribe_command
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.language_model import LanguageModelRunConfig, train_language_model
from multimodal_s2s.training.train import train


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(arg.startswith("-") for arg in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra  # dotted overrides may also follow the options
    full_float32_on_cuda()
    reuse_freed_memory()
    try:
        return args.run(args)
    except (InputError, TrainingError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training could save anything, or outside training
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ms2s", description=__doc__)
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('multimodal_s2s')}",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train_parser = commands.add_parser("train", help="train (or resume) a model from a config")
    train_parser.add_argument("config", type=Path, help="YAML config")
    train_parser.add_argument("overrides", nargs="*", help="dotted overrides: encoder.name=cnn")
    train_parser.add_argument("--out", type=Path, required=True, help="run folder")
    train_parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest readable checkpoint",
    )
    train_parser.set_defaults(run=_train)

    lm_parser = commands.add_parser(
        "train-lm", help="train (or resume) an LSTM language model on text, for search.lm"
    )
    lm_parser.add_argument("config", type=Path, help="YAML config (model, tokenizer, data, train)")
    lm_parser.add_argument("overrides", nargs="*", help="dotted overrides: data.train=text.txt")
    lm_parser.add_argument("--out", type=Path, required=True, help="run folder")
    lm_parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its lm.pt"
    )
    lm_parser.set_defaults(run=_train_lm)

    evaluate_parser = commands.add_parser("evaluate", help="score a checkpoint on data splits")
    evaluate_parser.add_argument("--model", type=Path, required=True, help="checkpoint")
    evaluate_parser.add_argument(
        "--splits",
        nargs="*",
        help="default: the data's eval splits (dotted overrides after it are still overrides)",
    )
    evaluate_parser.add_argument(
        "--beam",
        type=int,
        help="beam size (1 = greedy; default: the checkpoint's)",
    )
    evaluate_parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    evaluate_parser.add_argument(
        "--report", type=Path, help="folder for results.json and <split>.jsonl per-item records"
    )
    add_nbest_argument(evaluate_parser, "--report")
    evaluate_parser.add_argument("overrides", nargs="*", help="dotted overrides (data.*, search.*)")
    evaluate_parser.set_defaults(run=_evaluate)
    add_transcribe_command(commands)
    add_caption_command(commands)
    add_export_command(commands)

    import_parser = commands.add_parser(
        "import",
        help="write a JSON Lines manifest from a Kaldi data dir, LibriSpeech tree or FSDD, "
        "or from COCO, Flickr or captions.tsv caption data",
    )
    import_parser.add_argument(
        "layout", choices=sorted(IMPORTERS | CAPTION_IMPORTERS), help="source corpus layout"
    )
    import_parser.add_argument(
        "src",
        type=Path,
        help="Kaldi data directory, LibriSpeech root, FSDD folder, COCO captions_*.json, "
        "Flickr token/results file, or folder with captions.tsv",
    )
    import_parser.add_argument("out", type=Path, help="output manifest (.jsonl)")
    import_parser.add_argument(
        "--images", type=Path, help="caption layouts: the folder the image files are in"
    )
    import_parser.set_defaults(run=_import)

    convert_parser = commands.add_parser(
        "convert-checkpoint",
        help="rewrite a trusted older checkpoint (numpy values) in the safe plain-data format",
    )
    convert_parser.add_argument("old", type=Path, help="checkpoint from a source you trust")
    convert_parser.add_argument("new", type=Path, help="converted checkpoint (may be OLD)")
    convert_parser.set_defaults(run=_convert_checkpoint)
    return parser


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    result = train(config, args.out, resume=args.resume)
    if result.interrupted:
        return 130
    if result.is_main:
        best = f"dev {config.train.dev_metric} {result.best_dev_metric:.4f}"
        print(f"best checkpoint: {result.best_checkpoint} ({best})")
    return 0


def _train_lm(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, LanguageModelRunConfig)
    result = train_language_model(config, args.out, resume=args.resume)
    dev = (
        ""
        if math.isnan(result.dev_perplexity)
        else f" (dev perplexity {result.dev_perplexity:.3f})"
    )
    print(f"language model: {result.checkpoint}{dev}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.report is not None:
        check_writable(args.report, folder=True)
    device = resolve_device(args.device)
    model, tokenizer, config = load_model(args.model, device)
    requested = args.splits or []
    splits = [name for name in requested if "=" not in name]
    overrides = [name for name in requested if "=" in name] + args.overrides
    config = decoding_config(config, overrides, ("data", "search"), args.beam, args.nbest)
    data = build_source(config.data)
    splits = splits or data.eval_splits
    for split in splits:
        data.texts(split)  # an unknown split or a missing manifest fails before any decoding
    results = {}
    for split in splits:
        evaluation = evaluate_model(
            model, tokenizer, data, split, config, device, progress=True, nbest=bool(args.nbest)
        )
        results[split] = evaluation.metrics
        print(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in evaluation.metrics.items()))
        if args.report is not None:
            write_manifest(evaluation.records, args.report / f"{split}.jsonl")
    if args.report is not None:
        with atomic_write(args.report / "results.json") as file:
            file.write(json.dumps(results, indent=2) + "\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    check_writable(args.out)
    if args.layout in CAPTION_IMPORTERS:
        records = CAPTION_IMPORTERS[args.layout](args.src, args.images)
        write_manifest(records, args.out)
        captions = sum(len(record["captions"]) for record in records)
        print(f"wrote {len(records)} images ({captions} captions) to {args.out}")
        return 0
    if args.images is not None:
        raise InputError(f"--images is for the caption layouts, not {args.layout!r}")
    records = IMPORTERS[args.layout](args.src)
    write_manifest(records, args.out)
    hours = sum(record["duration"] for record in records) / 3600
    print(f"wrote {len(records)} utterances ({hours:.2f} h) to {args.out}")
    return 0


def _convert_checkpoint(args: argparse.Namespace) -> int:
    check_writable(args.new)
    convert_checkpoint(args.old, args.new)
    print(f"wrote {args.new} (loads with torch.load(weights_only=True))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
