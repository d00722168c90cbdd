"""Output directories: one writer at a time, one set of settings per directory."""

from __future__ import annotations

import json
import os

import pytest

from specfair.errors import SpecfairError
from specfair.rundir import LOCK_FILE, check_out_dir, dir_lock


def test_lock_refuses_a_second_writer_and_is_removed_on_exit(tmp_path):
    out = tmp_path / "out"
    with dir_lock(out, "specfair bench --out out"):
        info = json.loads((out / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(SpecfairError, match=rf"in use by specfair process {os.getpid()} "
                                                r"\(specfair bench --out out"):
            with dir_lock(out):
                pass
    assert not (out / LOCK_FILE).exists()
    with dir_lock(out):  # free again
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "command": "old"}))
    with dir_lock(tmp_path, "new"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["command"] == "new"
    assert not (tmp_path / LOCK_FILE).exists()


def test_check_out_dir_creates_nothing(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SpecfairError, match="existing file"):
        check_out_dir(f)
    with pytest.raises(SpecfairError, match="is a file"):
        check_out_dir(f / "sub")
    with pytest.raises(SpecfairError, match="cannot write"):
        check_out_dir("/proc/specfair-out/x")
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SpecfairError, match="cannot write"):
            check_out_dir(ro / "out")
    finally:
        ro.chmod(0o755)


def _pair_args(tiny_pair, out, target=None):
    t, d = tiny_pair
    return ["--out", out, "--target", target or t, "--drafter", d, "--n-per-task", "1",
            "--max-new-tokens", "3", "--dtype", "float32", "--device", "cpu", "--gamma", "2"]


@pytest.mark.parametrize("command", ["bench", "estimate", "distill"])
def test_second_writer_is_refused_at_once_by_every_command(cli, tiny_pair, tmp_path, command):
    out = tmp_path / "out"
    args = _pair_args(tiny_pair, out)
    if command == "distill":
        args = args[:6] + ["--steps", "1"]
    with dir_lock(out, "specfair first"):
        code, _, err = cli(command, *args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"in use by specfair process {os.getpid()} (specfair first" in err
    assert not out.exists()  # nothing written; the lock and the directory it made are gone


def test_experiment_second_writer_is_refused(cli, tmp_path):
    with dir_lock(tmp_path / "run", "specfair first"):
        code, _, err = cli("experiment", "demo", "--run-dir", tmp_path / "run")
    assert code == 2 and f"in use by specfair process {os.getpid()}" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["bench", "estimate"])
def test_rerun_with_another_target_is_refused(cli, tiny_pair, tmp_path, command):
    out = tmp_path / "out"
    code, _, err = cli(command, *_pair_args(tiny_pair, out))
    assert code == 0, err
    name = "bench.jsonl" if command == "bench" else "estimate.jsonl"
    recs = [json.loads(x) for x in (out / name).read_text().splitlines()]
    want = {"target", "drafter", "dtype", "max_new_tokens", "temperature", "suite", "data_hash",
            "split", "specfair"}
    assert recs and all(want <= r["settings"].keys() for r in recs)
    assert all(r["settings"]["target"] == str(tiny_pair[0]) for r in recs)
    before = (out / name).read_bytes()
    # the drafter directory as the target: same tokenizer, another model
    code, _, err = cli(command, *_pair_args(tiny_pair, out, target=tiny_pair[1]))
    assert code == 2 and err.count("\n") == 1, err
    assert "target=" in err and str(tiny_pair[1]) in err
    for flag, value in (("--max-new-tokens", "4"), ("--temperature", "0.5")):
        code, _, err = cli(command, *_pair_args(tiny_pair, out), flag, value)  # the last wins
        assert code == 2 and flag.lstrip("-").replace("-", "_") + "=" in err, err
    assert (out / name).read_bytes() == before
    code, _, err = cli(command, *_pair_args(tiny_pair, out))  # same settings: resumes
    assert code == 0, err
    assert (out / name).read_bytes() == before


def test_empty_and_broken_symlink_outs_are_refused(tmp_path):
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "loop").symlink_to("loop")
    for out, flag, said in [("", "--out", "--out is empty"),
                            ("  ", "--run-dir", "--run-dir is empty"),
                            (tmp_path / "dangling", "--out", "is a symlink to nowhere"),
                            (tmp_path / "dangling" / "a", "--out", "dangling is a symlink to"),
                            (tmp_path / "loop", "--out", "is a symlink loop"),
                            (tmp_path / "loop" / "a" / "b", "--out", "loop is a symlink loop")]:
        with pytest.raises(SpecfairError, match=said):
            check_out_dir(out, flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]


def test_a_lock_that_is_not_a_file_is_one_error(tmp_path):
    (tmp_path / LOCK_FILE).mkdir()
    with pytest.raises(SpecfairError, match="is not a regular file"):
        check_out_dir(tmp_path)
    with pytest.raises(SpecfairError, match=f"cannot open the lock file .*{LOCK_FILE}"):
        with dir_lock(tmp_path):
            pass
    (tmp_path / LOCK_FILE).rmdir()
    (tmp_path / LOCK_FILE).symlink_to("nowhere")
    with pytest.raises(SpecfairError, match="is not a regular file"):
        check_out_dir(tmp_path)
