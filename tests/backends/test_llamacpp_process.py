"""llama.cpp backend logic against a fake llama-server: flags, counters, start/stop, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive, started_pids

from specfair.backends import EngineResult, add_engine_counts, lengths_from_positions
from specfair.backends.llama_server import (
    INSTALL_HINT,
    LlamaServer,
    draft_flags,
    find_llama_server,
    ngram_flags,
    parse_metrics,
)
from specfair.backends.llamacpp import LlamaCppBackend
from specfair.errors import SpecfairError


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory, tiny_pair):
    from tiny import write_tiny_gguf

    root = tmp_path_factory.mktemp("gguf")
    return write_tiny_gguf(tiny_pair[0], root / "t.gguf"), write_tiny_gguf(
        tiny_pair[1], root / "d.gguf"
    )


def test_draft_flags_new_and_old_names():
    new = "--spec-draft-model, -md FNAME\n--spec-draft-n-max N\n--spec-draft-n-min N\n" \
          "--spec-draft-p-min, --draft-p-min P\n--spec-draft-threads, -td, --threads-draft N\n"
    old = "-md,    --model-draft FNAME\n--draft-max, --draft, --draft-n N\n" \
          "--draft-min, --draft-n-min N\n--draft-p-min P\n-td,    --threads-draft N\n"
    f = draft_flags(new)
    assert (f["model"], f["n_max"], f["n_min"], f["p_min"]) == (
        "--spec-draft-model", "--spec-draft-n-max", "--spec-draft-n-min", "--spec-draft-p-min")
    assert "type" not in f
    typed = new + "--spec-type none,draft-simple,draft-eagle3,ngram-simple\n"
    assert draft_flags(typed)["type"] == "--spec-type"
    f = draft_flags(old)
    assert (f["model"], f["n_max"], f["n_min"], f["p_min"], f["threads"]) == (
        "--model-draft", "--draft-max", "--draft-min", "--draft-p-min", "--threads-draft")
    with pytest.raises(SpecfairError, match=INSTALL_HINT):
        draft_flags("-m FNAME\n--port N\n")


def test_ngram_flags_from_help_and_a_build_without_them():
    typed = "--spec-type none,draft-simple,ngram-simple,ngram-mod\n"
    help_text = (typed + "--spec-ngram-simple-size-n N\n--spec-ngram-simple-size-m N\n"
                 "--spec-ngram-size-n N   the argument has been removed\n")
    assert ngram_flags(help_text) == {"type": "--spec-type",
                                      "size_n": "--spec-ngram-simple-size-n",
                                      "size_m": "--spec-ngram-simple-size-m"}
    older = typed + "--spec-ngram-size-n N\n--spec-ngram-size-m N\n"  # before the split
    assert ngram_flags(older)["size_m"] == "--spec-ngram-size-m"
    for without in ("--spec-type none,draft-simple\n--spec-ngram-simple-size-n N\n"
                    "--spec-ngram-simple-size-m N\n", "--spec-draft-model, -md FNAME\n",
                    typed):  # fmt: skip
        with pytest.raises(SpecfairError, match=r"no n-gram drafting.*--proposer ngram.*"
                                                + INSTALL_HINT):
            ngram_flags(without)


def test_parse_metrics():
    text = (
        "# HELP llamacpp:spec_decode_num_drafts_total x\n"
        "llamacpp:spec_decode_num_drafts_total 7\n"
        'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 5\n'
        'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 2\n'
    )
    m = parse_metrics(text)
    assert m["spec_decode_num_drafts_total"] == 7
    assert m["spec_decode_num_accepted_tokens_per_pos_total"] == {"0": 5, "1": 2}


def test_lengths_from_positions():
    # 4 steps of gamma 3: accepted 0, 1, 3, 3 -> per position [3, 2, 2]
    lengths, rej = lengths_from_positions(4, [3, 2, 2])
    assert sorted(lengths) == [1, 2, 4, 4] and rej == 2
    with pytest.raises(SpecfairError):
        lengths_from_positions(2, [1, 3])


def test_engine_counts_in_record():
    rec = {"drafted": 0, "accepted": 0, "rejections": 0, "accepted_lengths": []}
    res = EngineResult(tokens=[1] * 9, wall_s=1.0, drafted=12, accepted=7, n_drafts=4,
                       accepted_per_pos=[3, 2, 2], gamma=3)
    add_engine_counts(rec, res)
    add_engine_counts(rec, res)
    assert rec["drafted"] == 24 and rec["accepted"] == 14 and rec["rejections"] == 4
    assert rec["accepted_per_pos"] == [6, 4, 4] and len(rec["accepted_lengths"]) == 8
    # totals only (an older llama-server): no step counts, no rejections
    rec2 = {"drafted": 0, "accepted": 0, "rejections": 0, "accepted_lengths": []}
    add_engine_counts(rec2, EngineResult(tokens=[1], wall_s=1.0, drafted=5, accepted=2, gamma=5))
    assert rec2["rejections"] is None and rec2["accepted_lengths"] == []


def test_missing_binary_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SPECFAIR_LLAMA_SERVER", raising=False)
    with pytest.raises(SpecfairError, match="specfair backends install llamacpp"):
        find_llama_server()
    with pytest.raises(SpecfairError, match="specfair backends install llamacpp"):
        find_llama_server(tmp_path / "nope")


def test_cli_missing_binary(tmp_path, tiny_pair, ggufs):
    env = {**os.environ, "SPECFAIR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop("SPECFAIR_LLAMA_SERVER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "specfair", "bench", "--backend", "llamacpp", "--out",
         str(tmp_path / "o"), "--target", str(ggufs[0]), "--drafter", str(ggufs[1]),
         "--tokenizer", str(tiny_pair[0]), "--n-per-task", "1"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "specfair backends install llamacpp" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags", ["new", "old"])
def test_backend_with_fake_server(fake_server, tmp_path, tiny_pair, ggufs, monkeypatch, flags):
    monkeypatch.setenv("FAKE_FLAGS", flags)
    from specfair.backends import llama_server

    llama_server.server_help.cache_clear()
    be = LlamaCppBackend(str(ggufs[0]), str(ggufs[1]), gamma=4, binary=str(fake_server),
                         tokenizer=str(tiny_pair[0]))
    try:
        pids = started_pids(tmp_path)
        assert len(pids) == 2 and all(alive(p) for p in pids)
        argv = {p: (tmp_path / "pids" / f"{p}.pid").read_text() for p in pids}
        sd_argv = next(a for a in argv.values() if "-model-draft" in a or "-draft-model" in a)
        assert ("--spec-draft-n-max 4" if flags == "new" else "--draft-max 4") in sd_argv
        assert "--host 127.0.0.1" in sd_argv and "-np 1" in sd_argv
        ar = be.generate("ar", [1, 2, 3], gamma=4, max_new_tokens=9)
        sd = be.generate("sd", [1, 2, 3], gamma=4, max_new_tokens=9)
        assert ar.tokens == sd.tokens == list(range(4, 13))
        assert ar.drafted == 0 and sd.drafted == 8 and sd.accepted == 6
        assert sd.n_drafts == 2 and sd.accepted_per_pos == [2, 2, 2, 0]
        assert sd.wall_s == pytest.approx(0.092)
        assert be.info()["engine"].startswith("llama.cpp llama-server version: 4242")
    finally:
        be.close()
    assert not any(alive(p) for p in pids)


def test_backends_share_one_ar_server_and_run_without_a_drafter(fake_server, tmp_path,
                                                                 tiny_pair, ggufs):
    tok = str(tiny_pair[0])
    with LlamaCppBackend(str(ggufs[0]), str(ggufs[1]), gamma=4, binary=str(fake_server),
                         tokenizer=tok) as owner:
        ar = owner.servers["ar"]
        with LlamaCppBackend(str(ggufs[0]), str(ggufs[1]), gamma=4, binary=str(fake_server),
                             tokenizer=tok, ar_server=ar) as other:
            assert other.servers["ar"] is ar and len(started_pids(tmp_path)) == 3
            assert other.generate("ar", [1, 2], gamma=4, max_new_tokens=3).tokens == [3, 4, 5]
        assert ar.running  # left to its owner
        with pytest.raises(SpecfairError, match="ar_server serves"):
            LlamaCppBackend(str(ggufs[1]), None, binary=str(fake_server), tokenizer=tok,
                            ar_server=ar)
    with LlamaCppBackend(str(ggufs[1]), None, binary=str(fake_server), tokenizer=tok) as alone:
        assert list(alone.servers) == ["ar"] and alone.drafter_label == "none"
        assert alone.generate("ar", [1], gamma=4, max_new_tokens=2).tokens == [2, 3]
        with pytest.raises(SpecfairError, match="no drafter"):
            alone.generate("sd", [1], gamma=4, max_new_tokens=2)
    assert len(started_pids(tmp_path)) == 4 and not any(alive(p) for p in started_pids(tmp_path))


def test_ngram_backend_runs_llamacpp_prompt_lookup(fake_server, tmp_path, tiny_pair, ggufs,
                                                   monkeypatch):
    monkeypatch.setenv("FAKE_FLAGS", "spec")
    from specfair.backends import llama_server

    llama_server.server_help.cache_clear()
    be = LlamaCppBackend(str(ggufs[0]), "not-a-drafter", gamma=6, binary=str(fake_server),
                         tokenizer=str(tiny_pair[0]), proposer="ngram")
    try:
        pids = started_pids(tmp_path)
        assert len(pids) == 2 and all(alive(p) for p in pids)
        argv = [(tmp_path / "pids" / f"{p}.pid").read_text().split() for p in pids]
        sd_argv = next(a for a in argv if "--spec-type" in a)
        ar_argv = next(a for a in argv if a is not sd_argv)
        i = sd_argv.index("--spec-type")
        assert sd_argv[i:i + 6] == ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n",
                                    "3", "--spec-ngram-simple-size-m", "6"]
        assert not any("draft" in a for a in sd_argv + ar_argv)  # no draft model, no -n-max
        assert "--spec-type" not in ar_argv
        ar = be.generate("ar", [1, 2, 3], gamma=6, max_new_tokens=13)
        sd = be.generate("sd", [1, 2, 3], gamma=6, max_new_tokens=13)
        assert ar.tokens == sd.tokens and ar.drafted == 0
        assert sd.drafted == 12 and sd.accepted == 10 and sd.n_drafts == 2
        assert sd.accepted_per_pos == [2, 2, 2, 2, 2, 0]
        info = be.info()
        assert info["proposer"] == "ngram" and info["drafter_gguf"] is None
        assert be.drafter_label == "none" and "ngram-simple" in info["server_args"]
    finally:
        be.close()
    assert not any(alive(p) for p in pids)


@pytest.mark.parametrize("flags", ["new", "old"])
def test_ngram_on_a_build_without_it_is_one_error_before_any_start(
        fake_server, tmp_path, tiny_pair, ggufs, monkeypatch, flags):  # fmt: skip
    monkeypatch.setenv("FAKE_FLAGS", flags)
    from specfair.backends import llama_server

    llama_server.server_help.cache_clear()
    with pytest.raises(SpecfairError, match="no n-gram drafting.*newer llama-server"):
        LlamaCppBackend(str(ggufs[0]), None, gamma=4, binary=str(fake_server),
                        tokenizer=str(tiny_pair[0]), proposer="ngram")
    assert started_pids(tmp_path) == []


def test_ngram_server_arguments_are_checked(fake_server, ggufs, monkeypatch):
    monkeypatch.setenv("FAKE_FLAGS", "spec")
    from specfair.backends import llama_server

    llama_server.server_help.cache_clear()
    with pytest.raises(SpecfairError, match="takes no draft model"):
        LlamaServer(ggufs[0], draft=ggufs[1], spec="ngram", binary=fake_server)
    with pytest.raises(SpecfairError, match="gamma >= 3"):
        LlamaServer(ggufs[0], spec="ngram", gamma=2, binary=fake_server)
    with pytest.raises(SpecfairError, match="spec must be one of draft, ngram"):
        LlamaServer(ggufs[0], spec="eagle", binary=fake_server)
    # the draft-model server on a build with --spec-type names its method
    cmd = LlamaServer(ggufs[0], draft=ggufs[1], gamma=4, binary=fake_server).command(1)
    assert cmd[cmd.index("--spec-type") + 1] == "draft-simple"


def test_run_bench_records_and_summary(fake_server, tmp_path, tiny_pair, ggufs):
    from specfair.measure.bench import run_bench
    from specfair.measure.bench_summary import summarize_bench
    from specfair.tasks import Prompt

    prompts = [Prompt(id=f"p{i}", task=t, turns=("hi", "more") if i == 3 else ("hello",),
                      reference=None, source="test") for i, t in enumerate("aabb")]
    with LlamaCppBackend(str(ggufs[0]), str(ggufs[1]), gamma=4, binary=str(fake_server),
                         tokenizer=str(tiny_pair[0])) as be:
        path = run_bench(None, prompts, tmp_path / "out", gamma=4, max_new_tokens=9,
                         backend=be, progress=False)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert {r["backend"] for r in recs} == {"llamacpp"} and len(recs) == 8
    sd = [r for r in recs if r["mode"] == "sd"]
    assert all(r["matches_ar"] for r in sd)
    assert sd[3]["drafted"] == 16 and sd[3]["turns"] == 2 and len(sd[3]["engine"]) == 2
    assert sd[0]["rejections"] == 2 and sorted(sd[0]["accepted_lengths"]) == [4, 4]
    s = summarize_bench(path)
    assert s["overall"]["alpha"]["mean"] == pytest.approx(0.75)
    assert s["overall"]["tau"]["mean"] == pytest.approx(4.0)
    assert s["overall"]["sd_matches_ar"] == 1.0
    assert set(s["tasks"]) == {"a", "b"} and s["disparity"]["n_tasks"] == 2


def test_bench_command_ngram_on_llamacpp(fake_server, tmp_path, tiny_pair, ggufs, monkeypatch,
                                        capsys):
    monkeypatch.setenv("FAKE_FLAGS", "spec")
    from specfair.backends import llama_server
    from specfair.measure.commands import bench_command

    llama_server.server_help.cache_clear()
    opts = {"binary": str(fake_server), "tokenizer": str(tiny_pair[0])}
    s = bench_command(str(ggufs[0]), "unused", "default", tmp_path / "o", n_per_task=1,
                      gamma=4, max_new_tokens=9, backend="llamacpp", backend_options=opts,
                      proposer="ngram", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "o" / "bench.jsonl").read_text().splitlines()]
    assert {(r["proposer"], r["drafter"], r["backend"]) for r in recs} == {
        ("ngram", "none", "llamacpp")}
    assert all(r["matches_ar"] for r in recs if r["mode"] == "sd")
    assert s["meta"]["engine"]["proposer"] == "ngram"
    assert "--spec-ngram-simple-size-m" in s["meta"]["engine"]["server_args"]
    assert s["meta"]["settings"]["proposer"] == "ngram" and s["overall"]["alpha"]["mean"] > 0


def test_run_bench_refuses_a_proposer_the_engine_does_not_run(fake_server, tmp_path, tiny_pair,
                                                              ggufs):
    from specfair.measure.bench import run_bench
    from specfair.tasks import Prompt

    prompts = [Prompt(id="p0", task="a", turns=("hello",), reference=None, source="test")]
    with LlamaCppBackend(str(ggufs[0]), str(ggufs[1]), gamma=4, binary=str(fake_server),
                         tokenizer=str(tiny_pair[0])) as be:
        with pytest.raises(SpecfairError, match="only --policy fixed:N and --proposer model"):
            run_bench(None, prompts, tmp_path / "out", gamma=4, max_new_tokens=4, backend=be,
                      proposer="ngram", progress=False)


@pytest.mark.parametrize("crash, said", [("1", "error: cannot load model"),
                                         ("silent", "(no output)")])
def test_server_crash_at_start_is_reported_and_cleaned(fake_server, tmp_path, ggufs, monkeypatch,
                                                       crash, said):
    monkeypatch.setenv("FAKE_CRASH", crash)
    with pytest.raises(SpecfairError, match="exited with status 3") as e:
        LlamaServer(ggufs[0], binary=fake_server).start()
    assert str(e.value).endswith("while starting:\n" + said)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_or_kill_stops_the_servers(fake_server, tmp_path, tiny_pair, ggufs, sig):
    """Ctrl-C unwinds and stops the servers; SIGKILL of specfair reaches them through
    PR_SET_PDEATHSIG."""
    code = f"""
import signal, sys; sys.path.insert(0, {str(Path(__file__).parents[2] / "src")!r})
signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
from specfair.backends.llamacpp import LlamaCppBackend
be = LlamaCppBackend({str(ggufs[0])!r}, {str(ggufs[1])!r}, binary={str(fake_server)!r},
                     tokenizer={str(tiny_pair[0])!r})
print("ready", flush=True)
try:
    be.generate("sd", [1, 2], gamma=5, max_new_tokens=4)
finally:
    be.close()
"""
    env = {**os.environ, "FAKE_SLOW": "30"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    pids = started_pids(tmp_path)
    assert len(pids) == 2 and all(alive(p) for p in pids)
    proc.send_signal(sig)
    proc.wait(300)
    assert proc.returncode != 0
    deadline = time.time() + 60
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def test_install_script_is_valid_bash_and_never_enables_amx_by_default():
    script = Path(__file__).parents[2] / "src/specfair/backends/install_llamacpp.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "GGML_NATIVE=OFF" in text and 'AMX=${LLAMACPP_AMX:-OFF}' in text


def test_a_failed_install_names_the_command(monkeypatch):
    from specfair.backends import install as install_mod

    monkeypatch.setattr(install_mod.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 7))
    with pytest.raises(SpecfairError, match=r"`bash /\S+/install_llamacpp\.sh` exited with "
                                            r"status 7; its output is above"):
        install_mod.install("llamacpp")
