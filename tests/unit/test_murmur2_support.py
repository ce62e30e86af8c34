"""The test suite's Java murmur2 against values Kafka's own Java tests pin down."""

from tests.support.murmur2 import java_partition, murmur2


def test_known_java_values() -> None:
    # from org.apache.kafka.common.utils.UtilsTest#testMurmur2
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        bytes([ord("a"), ord("b"), ord("c")]): 479470107,
    }
    for key, expected in cases.items():
        assert murmur2(key) == expected, key


def test_partition_is_non_negative_and_bounded() -> None:
    for i in range(200):
        assert 0 <= java_partition(f"user-{i}".encode(), 6) < 6
