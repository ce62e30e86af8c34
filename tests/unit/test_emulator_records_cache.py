"""The emulator's subscores cache never serves one activity's JSON for another."""

import json
import random

from connector.emulator import records
from connector.emulator.catalog import make_activity


def test_a_reused_id_does_not_serve_another_activitys_subscores() -> None:
    first = make_activity(random.Random(1), 0)
    second = next(  # another shape with as many subscores, so the marks key matches
        a
        for a in (make_activity(random.Random(seed), 3) for seed in range(2, 200))
        if len(a.subscores) == len(first.subscores) and a != first
    )
    marks = tuple((0, None, None) for _ in first.subscores)
    records._subscores_json(first, marks)
    # what an id() reused by a freed activity looks like to the cache
    records._subscores_cache[(id(second), marks)] = records._subscores_cache.pop((id(first), marks))
    served = json.loads(records._subscores_json(second, marks))
    assert served == records.subscore_dicts(second, marks)
    assert served != records.subscore_dicts(first, marks)
