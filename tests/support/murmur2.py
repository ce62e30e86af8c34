"""Java's default partitioner for keyed records, written out from Kafka's Utils.murmur2.

An independent implementation (not librdkafka's), so a test can check that the
connector's partitions match what Java producers and Kafka Streams compute.
"""

MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & MASK
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & MASK
        k ^= k >> r
        k = (k * m) & MASK
        h = (h * m) & MASK
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & MASK
    h ^= h >> 13
    h = (h * m) & MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """Utils.toPositive(Utils.murmur2(key)) % numPartitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
