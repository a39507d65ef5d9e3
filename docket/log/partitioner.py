"""The one key -> partition function. Every writer uses it; nothing uses a client default.

Keys hash (Kafka's murmur2, so Java producers can agree) to one of ``SHARDS`` virtual
shards, and shards map onto partitions in contiguous ranges. Growing the partition count
then moves whole shards rather than reshuffling every key (see docs/operations.md).
"""

from __future__ import annotations

from functools import lru_cache

SHARDS = 4096
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as a signed 32-bit int like the Java client."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def shard(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % SHARDS


@lru_cache(maxsize=1 << 16)
def partition(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: its shard's range (cached: every
    record of a workflow asks again, and murmur2 is pure Python)."""
    return shard(key) * partitions // SHARDS
