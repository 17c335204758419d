"""Scoring a model on a data split: teacher-forced loss, decoding, the source's metrics."""

import time
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from multimodal_s2s.config import Config
from multimodal_s2s.data.base import DataSource
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.decode import Decoded, decode_batch
from multimodal_s2s.text import Tokenizer, teacher_forcing_pair
from multimodal_s2s.training.distributed import SINGLE_PROCESS, Distributed


class Evaluation(NamedTuple):
    """Corpus metrics of one split and one record per item (key, ref, hyp, score, ...)."""

    metrics: dict[str, float]
    records: list[dict[str, Any]]


@torch.no_grad()
def evaluate_model(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    data: DataSource,
    split: str,
    config: Config,
    device: torch.device | str,
    beam: bool = True,
    dist: Distributed = SINGLE_PROCESS,
    progress: bool = False,
    nbest: bool = False,
) -> Evaluation:
    """Decode one split and score it.

    Under data parallelism each rank decodes every ``world``-th batch; the per-item records
    and loss sums are gathered, so every rank returns the same metrics and records, in the
    order one process would produce them.

    Metrics: ``loss`` per token (teacher forcing, no smoothing), ``decode_seconds`` (time in
    search, including encoding, summed over ranks), ``items``, and the data source's
    ``score`` (``wer`` first) of the records' ``ref``, or ``refs`` where batches carry
    several references per item (captions).

    ``progress`` shows a progress bar over this process's batches on stderr (when it is a
    terminal). ``nbest``: each record also has ``"nbest"``, the ``search.nbest`` best
    hypotheses as ``[{"text", "score"}, ...]``, best first.
    """
    was_training = model.training
    model.eval()
    total_loss, total_tokens, decode_seconds, numbered = 0.0, 0, 0.0, []
    batches = data.batches(split, train=False, batch_size=config.train.batch_size, shard=dist.shard)
    views = decoding_views(config.data)
    bar = tqdm(
        batches,
        desc=f"evaluating {split}",
        unit="batch",
        disable=None if progress else True,
        dynamic_ncols=True,
        leave=False,
    )
    for local_index, batch in enumerate(bar):
        sources, lengths = batch.tensors_on(device)
        inputs, targets = teacher_forcing_pair([tokenizer.encode(t) for t in batch.texts])
        log_probs, _, _ = model(sources, lengths, inputs.to(device))
        total_loss += float(token_loss(log_probs, targets.to(device)))
        total_tokens += int((targets != 0).sum())
        started = time.perf_counter()
        decoded = decode_batch(model, tokenizer, sources, lengths, config.search, beam, views)
        decode_seconds += time.perf_counter() - started
        batch_index = dist.rank + local_index * dist.world
        references = batch.references or [None] * len(decoded)
        items = zip(batch.keys, batch.texts, references, decoded, strict=True)
        numbered += [
            ((batch_index, position), _record(key, ref, refs, d, nbest))
            for position, (key, ref, refs, d) in enumerate(items)
        ]
    model.train(was_training)
    shares = dist.gather((numbered, total_loss, total_tokens, decode_seconds))
    ordered = sorted((item for share in shares for item in share[0]), key=lambda item: item[0])
    records = [record for _, record in ordered]
    refs, hyps = [r.get("refs", r["ref"]) for r in records], [r["hyp"] for r in records]
    metrics = {
        **data.score(refs, hyps),
        "loss": sum(s[1] for s in shares) / max(1, sum(s[2] for s in shares)),
        "decode_seconds": sum(s[3] for s in shares),
        "items": len(records),
    }
    return Evaluation(metrics, data.details(records))


def _record(
    key: str, ref: str, refs: list[str] | None, decoded: Decoded, nbest: bool
) -> dict[str, Any]:
    """One item's record: ``key``, ``ref``, ``hyp``, ``score``, ``refs`` (all references,
    where the source has several) and ``nbest`` (when asked)."""
    record = {"key": key, "ref": ref, "hyp": decoded.text, "score": decoded.score}
    if refs is not None:
        record["refs"] = refs
    if nbest:
        pairs = decoded.nbest or ((decoded.text, decoded.score),)
        record["nbest"] = [{"text": text, "score": score} for text, score in pairs]
    return record
