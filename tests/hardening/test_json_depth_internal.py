"""JSON a run wrote but a user could hand over: the signal index and the verify-curve cache
parse with schema.loads_json (nesting too deep is a ValueError, never a RecursionError)."""

import pytest

from specfair.errors import SpecfairError
from specfair.measure.costs import verify_curve
from specfair.measure.signals import SignalStore

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_signal_index_line_is_dropped_like_a_torn_one(tmp_path):
    SignalStore(tmp_path, {"v": 1})
    (tmp_path / "index.jsonl").write_text(DEEP + "\n")
    store = SignalStore(tmp_path, {"v": 1})  # the line is not a record: its sequence is redone
    assert store._index == {}


def test_a_deeply_nested_verify_curve_cache_is_one_error(tmp_path):
    path = tmp_path / "verify-curves.json"
    path.write_text(DEEP)
    with pytest.raises(SpecfairError, match="not a JSON file"):
        verify_curve(None, None, [1, 2], "key", path=path)
