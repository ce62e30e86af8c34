"""The local broker's cluster ids never look like a command-line option."""

from dev.kafka_broker import new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # a leading '-' comes ~1 in 64 draws
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)
