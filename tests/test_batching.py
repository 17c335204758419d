import random

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from multimodal_s2s.data.batching import BucketBatchSampler, Shard, shard_batches
from multimodal_s2s.errors import InputError


def _lengths(count: int = 500, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(50, 1600) for _ in range(count)]


def _padded_size(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


def _assert_partition(batches: list[list[int]], count: int) -> None:
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(count))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("max_batch_size", [None, 7])
def test_batches_respect_caps_and_cover_every_index_once(shuffle, max_batch_size):
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, 6000, max_batch_size=max_batch_size, shuffle=shuffle)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        _assert_partition(batches, len(lengths))
        assert len(sampler) == len(batches)
        assert max(_padded_size(b, lengths) for b in batches) <= 6000
        assert max(len(b) for b in batches) <= (max_batch_size or len(lengths))


def test_bucketing_keeps_padding_waste_low():
    lengths = _lengths(2000)
    batches = list(BucketBatchSampler(lengths, 20000, num_buckets=40))
    padded = sum(_padded_size(b, lengths) for b in batches)
    assert sum(lengths) / padded > 0.9


def test_unshuffled_batches_are_packed_greedily_shortest_first():
    lengths = [5, 1, 4, 2, 3, 3]
    batches = list(BucketBatchSampler(lengths, max_frames=6, shuffle=False))
    assert batches == [[1, 3], [4, 5], [2], [0]]  # sizes 2*2, 2*3, 1*4, 1*5


def test_shuffle_is_reproducible_per_epoch_and_differs_between_epochs():
    lengths = _lengths()
    first = BucketBatchSampler(lengths, 6000, seed=3)
    second = BucketBatchSampler(lengths, 6000, seed=3)
    first.set_epoch(5)
    second.set_epoch(5)
    assert list(first) == list(second)
    assert list(first) == list(first)
    epoch_five = list(first)
    first.set_epoch(6)
    assert list(first) != epoch_five
    assert list(BucketBatchSampler(lengths, 6000, seed=4)) != list(second)


def test_equal_lengths_shuffle_composition_across_epochs():
    lengths = [224] * 100  # e.g. images: only the batch-size cap matters
    sampler = BucketBatchSampler(lengths, max_frames=224 * 8)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        _assert_partition(batches, 100)
        assert sorted(len(b) for b in batches) == [4] + [8] * 12  # one bucket
        epochs.append({frozenset(b) for b in batches})
    assert epochs[0] != epochs[1]


def test_oversized_items_become_single_batches_with_a_warning():
    lengths = [10, 500, 20, 30, 900]
    with pytest.warns(UserWarning, match="2 item\\(s\\) longer than max_frames=100"):
        sampler = BucketBatchSampler(lengths, max_frames=100, seed=1)
    batches = list(sampler)
    _assert_partition(batches, 5)
    assert [1] in batches and [4] in batches
    assert all(_padded_size(b, lengths) <= 100 for b in batches if b not in ([1], [4]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frames": 0},
        {"max_frames": 10, "max_batch_size": 0},
        {"max_frames": 10, "num_buckets": 0},
    ],
)
def test_invalid_arguments_are_errors(kwargs):
    with pytest.raises(InputError):
        BucketBatchSampler([1, 2, 3], **kwargs)


def test_empty_dataset_has_no_batches():
    assert list(BucketBatchSampler([], max_frames=10)) == []


class _LengthDataset(Dataset):
    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((self.lengths[index],), index)


def _collate(items: list[torch.Tensor]) -> list[int]:
    return [int(item[0]) for item in items]


def test_works_with_a_multi_worker_dataloader():
    lengths = _lengths(60)
    sampler = BucketBatchSampler(lengths, 3000, seed=2)
    sampler.set_epoch(1)
    loader = DataLoader(
        _LengthDataset(lengths), batch_sampler=sampler, num_workers=2, collate_fn=_collate
    )
    assert list(loader) == list(sampler)


def test_training_shards_split_every_global_batch_into_disjoint_equal_counts():
    lengths = _lengths(203)
    sampler = BucketBatchSampler(lengths, 6000 * 3, max_batch_size=8 * 3, seed=1)
    global_batches = list(sampler)
    shards = [shard_batches(global_batches, Shard(rank, 3), True, lengths) for rank in range(3)]
    kept = [batch for batch in global_batches if len(batch) >= 3]
    assert [len(shard) for shard in shards] == [len(kept)] * 3
    for step, batch in enumerate(kept):
        parts = [shard[step] for shard in shards]
        assert sorted(i for part in parts for i in part) == sorted(batch)
        assert max(len(part) for part in parts) - min(len(part) for part in parts) <= 1
        assert max(_padded_size(part, lengths) for part in parts) <= 6000 + max(lengths)


def test_a_global_batch_smaller_than_the_world_is_dropped_in_training_only():
    batches = [[0, 1, 2, 3], [4]]
    assert shard_batches(batches, Shard(1, 2), True) == [[1, 3]]
    assert shard_batches(batches, Shard(1, 2), False) == [[4]]
    assert shard_batches(batches, Shard(0, 2), False) == [[0, 1, 2, 3]]
    assert shard_batches(batches, Shard(0, 1), True) == batches
