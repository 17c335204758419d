"""Length-bucketed batches capped by padded size, for any modality."""

import bisect
import random
import warnings
from collections.abc import Iterator
from typing import NamedTuple

from torch.utils.data import Sampler

from multimodal_s2s.errors import InputError


class Shard(NamedTuple):
    """This process's share of the data: ``rank`` of ``world`` data-parallel processes."""

    rank: int = 0
    world: int = 1


WHOLE = Shard()  # one process sees all the data


def shard_batches(
    batches: list[list[int]], shard: Shard, train: bool, lengths: list[int] | None = None
) -> list[list[int]]:
    """This rank's part of an epoch's batches of item indices.

    In training each batch is a *global* batch (sized for all ranks together): rank ``r``
    gets items ``r, r + world, ...`` of it, longest first when ``lengths`` are given so
    that every rank pads about as much. A global batch with fewer items than ranks is
    dropped, so every rank gets the same number of batches and no rank waits at the end of
    an epoch. In evaluation whole batches are dealt round robin (rank ``r`` gets batches
    ``r, r + world, ...``), so every item is decoded exactly once.
    """
    rank, world = shard
    if world == 1:
        return batches
    if not train:
        return batches[rank::world]
    shards = []
    for batch in batches:
        if len(batch) < world:
            continue
        if lengths is not None:
            batch = sorted(batch, key=lambda index: -lengths[index])
        shards.append(batch[rank::world])
    return shards


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices whose padded size ``len(batch) * max(lengths)`` never
    exceeds ``max_frames`` (an item longer than that is a batch of its own, with a warning).

    Items are grouped into at most ``num_buckets`` length ranges cut at length quantiles
    (equal lengths always share a bucket, so equal-length data such as images forms one
    bucket). With ``shuffle``, each epoch shuffles the items inside every bucket, packs each
    bucket greedily, then shuffles the order of all batches; the result depends only on
    ``seed`` and the epoch given to :meth:`set_epoch`. Without ``shuffle``, batches are
    packed from the fully sorted order and come shortest first. Every index appears in
    exactly one batch per epoch. Pass it to a ``DataLoader`` as ``batch_sampler``.
    """

    def __init__(
        self,
        lengths: list[int],
        max_frames: int,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 20,
    ) -> None:
        if max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames}")
        if max_batch_size is not None and max_batch_size < 1:
            raise InputError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if num_buckets < 1:
            raise InputError(f"num_buckets must be >= 1, got {num_buckets}")
        if any(length < 0 for length in lengths):
            raise InputError("lengths must be >= 0")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._buckets = _length_buckets(self.lengths, num_buckets)
        self._cache: tuple[int, list[list[int]]] | None = None
        _warn_oversized(self.lengths, max_frames)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (call before iterating each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())

    def _batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._make_batches())
        return [list(batch) for batch in self._cache[1]]

    def _make_batches(self) -> list[list[int]]:
        if not self.shuffle:
            return self._pack(sorted(range(len(self.lengths)), key=self.lengths.__getitem__))
        rng = random.Random(f"BucketBatchSampler:{self.seed}:{self.epoch}")
        batches = []
        for bucket in self._buckets:
            items = list(bucket)
            rng.shuffle(items)
            batches.extend(self._pack(items))
        rng.shuffle(batches)
        return batches

    def _pack(self, indices: list[int]) -> list[list[int]]:
        """Greedily cut ``indices`` (in order) into batches under the caps."""
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0
        for index in indices:
            length = self.lengths[index]
            grown = max(longest, length)
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or (len(batch) + 1) * grown > self.max_frames):
                batches.append(batch)
                batch, grown = [], length
            batch.append(index)
            longest = grown
        if batch:
            batches.append(batch)
        return batches


def _length_buckets(lengths: list[int], num_buckets: int) -> list[list[int]]:
    """Indices grouped by length range; ranges start at ``num_buckets`` quantiles."""
    ordered = sorted(lengths)
    count = min(num_buckets, len(ordered))
    starts = sorted({ordered[i * len(ordered) // count] for i in range(1, count)})
    buckets: list[list[int]] = [[] for _ in range(len(starts) + 1)]
    for index, length in enumerate(lengths):
        buckets[bisect.bisect_right(starts, length)].append(index)
    return [bucket for bucket in buckets if bucket]


def _warn_oversized(lengths: list[int], max_frames: int) -> None:
    oversized = [length for length in lengths if length > max_frames]
    if oversized:
        warnings.warn(
            f"{len(oversized)} item(s) longer than max_frames={max_frames} "
            f"(longest {max(oversized)}) will form batches of their own",
            stacklevel=3,
        )
