"""The one key -> partition function: Kafka-compatible murmur2, virtual shards, ranges."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from docket.log.partitioner import SHARDS, murmur2, partition, shard

# From Kafka's own tests (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2), as quoted by other Kafka clients, plus the 1..5-byte keys Akka checks against
# the Java implementation: together they cover every tail length (len % 4 == 0, 1, 2, 3).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize(("data", "expected"), sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_murmur2_is_a_signed_32_bit_int() -> None:
    values = [murmur2(uuid.UUID(int=i).bytes) for i in range(2000)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)
    assert isinstance(murmur2(b""), int)


def test_murmur2_uses_every_byte() -> None:
    base = b"order-000000000001"
    for i in range(len(base)):
        changed = base[:i] + bytes([base[i] ^ 1]) + base[i + 1:]
        assert murmur2(changed) != murmur2(base), i


def test_shard_is_kafkas_positive_hash_modulo_shards() -> None:
    for key in ["", "a", "order-1", "ü-unicode-✓", "x" * 1000]:
        assert shard(key) == (murmur2(key.encode()) & 0x7FFFFFFF) % SHARDS
        assert 0 <= shard(key) < SHARDS


KEYS = [f"wf-{i}" for i in range(5000)] + [str(uuid.UUID(int=i * 7919)) for i in range(5000)]


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 16, 64, 256, SHARDS])
def test_partition_is_in_range_and_stable(partitions: int) -> None:
    first = [partition(k, partitions) for k in KEYS]
    assert all(0 <= p < partitions for p in first)
    assert [partition(k, partitions) for k in KEYS] == first


def test_partition_values_are_pinned() -> None:
    """Changing the mapping strands every execution on the wrong partition: pin it."""
    assert [partition(k, 4) for k in ("21", "foobar", "abc", "order-1", "hello-1")] == [
        (murmur2(k.encode()) & 0x7FFFFFFF) % SHARDS * 4 // SHARDS
        for k in ("21", "foobar", "abc", "order-1", "hello-1")
    ]
    assert partition("21", 4) == ((-973932308 & 0x7FFFFFFF) % 4096) * 4 // 4096


@pytest.mark.parametrize("partitions", [1, 3, 4, 10, 100, 256])
def test_shards_map_to_contiguous_ranges(partitions: int) -> None:
    owner = [s * partitions // SHARDS for s in range(SHARDS)]
    assert owner == sorted(owner), "shards must map in contiguous, increasing ranges"
    assert set(owner) == set(range(partitions)), "every partition gets a range"
    sizes = Counter(owner).values()
    assert max(sizes) - min(sizes) <= 1, "ranges are balanced"
    for key in KEYS[:500]:
        assert partition(key, partitions) == owner[shard(key)]


@pytest.mark.parametrize(("small", "large"), [(1, 2), (2, 4), (4, 8), (4, 16), (3, 6), (8, 64)])
def test_growing_by_a_multiple_only_splits_ranges(small: int, large: int) -> None:
    """With n -> k*n partitions a key moves only into a sub-range of its old partition, so one
    old partition's executions are handed to a known set of new partitions."""
    factor = large // small
    for key in KEYS:
        old, new = partition(key, small), partition(key, large)
        assert old * factor <= new < (old + 1) * factor


def test_keys_spread_over_partitions() -> None:
    counts = Counter(partition(k, 8) for k in KEYS)
    assert set(counts) == set(range(8))
    expected = len(KEYS) / 8
    assert all(abs(c - expected) < expected * 0.15 for c in counts.values()), counts
