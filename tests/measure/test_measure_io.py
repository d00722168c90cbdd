import pytest

from specfair.errors import SpecfairError
from specfair.measure.io import append_jsonl, read_json, read_jsonl, write_json


def test_truncated_last_line_is_ignored_and_repaired(tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    append_jsonl(p, {"id": "a", "v": 1.5})
    append_jsonl(p, {"id": "b", "v": float("nan")})
    with open(p, "a") as f:
        f.write('{"id": "c", "v"')  # a crash mid-line
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b"]
    err = capsys.readouterr().err  # a plain notice, not a UserWarning with a source line
    assert err.startswith("notice: ") and "incomplete last line" in err
    assert err.count("\n") == 1 and "Warning" not in err
    assert p.read_text().endswith('"v"')  # not repaired without repair=True
    read_jsonl(p, repair=True)
    assert p.read_text().endswith("}\n")
    append_jsonl(p, {"id": "c"})
    recs = read_jsonl(p)
    assert [r["id"] for r in recs] == ["a", "b", "c"]
    assert recs[1]["v"] is None


def test_complete_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_jsonl(p, repair=True)] == ["a", "b"]
    append_jsonl(p, {"id": "c"})
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "c"]


def test_corrupt_middle_line_is_an_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a"}\n{"id": \n{"id": "b"}\n')
    with pytest.raises(SpecfairError):
        read_jsonl(p)


def test_write_json_strict(tmp_path):
    p = tmp_path / "s.json"
    write_json(p, {"a": float("inf"), "b": [1, float("nan")]})
    assert read_json(p) == {"a": None, "b": [1, None]}
    assert read_jsonl(tmp_path / "missing.jsonl") == []
