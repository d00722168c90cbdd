"""Issue 31, causes 4-6: settings that bound work are bounded and checked before any model
loads, output paths are checked up front, a refused write is one ``error:`` line and the run
resumes; numbers in options are ASCII digits; JSON nested too deeply is one error; bad input
that was accepted silently (a data file edited in place, a corrupt record under ``report``,
``n_test`` above the data, the legacy ``kind``, ``--proposer ''``, a policy table's γ types
and task names) is refused.

Each CLI case must end with ONE ``error:`` line on stderr, exit status 2, no traceback and no
new file (as in ``tests/test_bad_inputs.py``).
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from study_data import write_study_sources
from test_bad_inputs import BENCH, DISTILL, ESTIMATE, tree
from test_bad_study_inputs import study_toml

from specfair.errors import SpecfairError
from specfair.study.config import StudyConfig

DEEP = "[" * 100_000 + "]" * 100_000  # nested past the JSON parser's recursion limit


def one_error(cli, argv, fragment: str, watched: list[Path]) -> str:
    """Run ``specfair ARGV``: one ``error:`` line containing ``fragment``, exit 2, no
    traceback, nothing created or removed under ``watched``."""
    before = [tree(w) for w in watched]
    code, out, err = cli(*argv)
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert len([x for x in lines if x.startswith("error:")]) == 1, err
    assert fragment in lines[-1], lines[-1]
    assert code == 2
    assert [tree(w) for w in watched] == before  # nothing written
    return lines[-1]


def argv_of(line: str, tiny_pair, w: Path, **more) -> list[str]:
    return [a.format(t=tiny_pair[0], d=tiny_pair[1], w=w, **more) for a in shlex.split(line)]


@pytest.fixture(scope="module")
def study_home(tmp_path_factory):
    """A SPECFAIR_HOME holding the study suite's sources (small files)."""
    home = tmp_path_factory.mktemp("study_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(home))
        write_study_sources(home / "data")
    return home


# ------------------------------------------------------------- 4. bounds, checked up front

def test_estimate_checks_its_policy_json_path_before_the_work(cli, tiny_pair, tmp_path):
    """Was: the whole estimate ran, then IsADirectoryError and a stray policy.json.tmp."""
    (tmp_path / "out" / "policy.json").mkdir(parents=True)
    one_error(cli, argv_of(ESTIMATE, tiny_pair, tmp_path), "policy.json is a directory",
              [tmp_path])


def test_the_experiment_checks_its_output_files_before_the_work(cli, tiny_pair, study_home,
                                                                tmp_path, monkeypatch):
    """A directory where the run writes summary.json (or report.md, ...): refused up front,
    not after the training."""
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    (tmp_path / "run" / "summary.json").mkdir(parents=True)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(experiment_toml(tiny_pair))
    one_error(cli, ["experiment", cfg, "--run-dir", tmp_path / "run"],
              "summary.json is a directory, where a file is written", [tmp_path, study_home])


SEED_ROWS = [  # (experiment TOML edit, fragment)
    ("seed = -1", "seed = -1 in the top level must be an integer in [0, 4294967296)"),
    ("seed = 4294967296", "seed = 4294967296 in the top level must be an integer in [0,"),
    ("seed = 18446744073709551616", "seed = 18446744073709551616 in the top level must be"),
    ("seeds = [0, 4294967296]", "seeds = [0, 4294967296] in the top level must be a non-empty"),
]


@pytest.mark.parametrize("edit, fragment", SEED_ROWS, ids=[r[0] for r in SEED_ROWS])
def test_experiment_seeds_within_0_and_2_32(cli, tiny_pair, study_home, tmp_path,
                                             monkeypatch, edit, fragment):
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    cfg = tmp_path / "s.toml"
    cfg.write_text(study_toml(tiny_pair, edit))
    one_error(cli, ["experiment", cfg, "--run-dir", tmp_path / "run"], fragment,
              [tmp_path, study_home])


CLI_SEED_ROWS = [
    (BENCH + " --seed -1", "--seed must be an integer in [0, 2**32), got -1"),
    (ESTIMATE + " --seed 4294967296", "--seed must be an integer in [0, 2**32)"),
    (DISTILL + " --config {w}/seed.toml", "seed = -1 in [distill] must be an integer in [0,"),
]


@pytest.mark.parametrize("line, fragment", CLI_SEED_ROWS, ids=["bench", "estimate", "distill"])
def test_command_seeds_within_0_and_2_32(cli, tiny_pair, tmp_path, line, fragment):
    (tmp_path / "seed.toml").write_text("[distill]\nseed = -1\n")
    one_error(cli, argv_of(line, tiny_pair, tmp_path), fragment, [tmp_path])


WORK_ROWS = [  # settings that ran until killed: refused by the config check (no model loaded)
    ("epochs = 1e12", "epochs = 1000000000000.0 in the top level must be a finite number in "
                      "(0, 100]"),
    ("overfit_epochs = 1e6", "overfit_epochs = 1000000.0 in the top level must be"),
    ("bootstrap = 1000000000", "bootstrap = 1000000000 in the top level must be an integer in"),
    ("gamma = 100000", "gamma = 100000 in the top level must be an integer in [1, 64]"),
    ("test_response_tokens = 100000",
     "test_response_tokens = 100000 in the top level must be an integer in [1, 511] (the "
     "context of"),
]


@pytest.mark.parametrize("edit, fragment", WORK_ROWS, ids=[r[0] for r in WORK_ROWS])
def test_study_settings_that_size_the_work_are_bounded(tiny_pair, tmp_path, edit, fragment):
    """Checked where the experiment checks them (the config load, then ``check_models`` before
    any model loads); without a bound these ran until killed, so the check is called here
    rather than the command."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(study_toml(tiny_pair, edit))
    with pytest.raises(SpecfairError) as e:
        StudyConfig.load(cfg).check_models()
    assert fragment in str(e.value)


def test_max_prompt_tokens_beyond_the_context_is_refused_before_any_answer(
        cli, tiny_pair, study_home, tmp_path, monkeypatch):
    """Was: refused only after the target's answers were written, naming `budgets`."""
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    cfg = tmp_path / "s.toml"
    cfg.write_text(study_toml(tiny_pair, "max_prompt_tokens = 100000"))
    one_error(cli, ["experiment", cfg, "--run-dir", tmp_path / "run"],
              "max_prompt_tokens = 100000 in the top level must be an integer in [1, 506] (with "
              "train_response_tokens = 6, a training sequence fits the context of",
              [tmp_path, study_home])


DISTILL_WORK_ROWS = [
    (DISTILL + " --steps 1000000000", "--steps 1000000000: must be an integer in [1, 1000000]"),
    (DISTILL + " --config {w}/c.toml", "max_seq_len = 100000 in [distill] must be an integer "
                                       "in [1, 512] (the context of"),
]


@pytest.mark.parametrize("line, fragment", DISTILL_WORK_ROWS, ids=["steps", "max_seq_len"])
def test_distill_settings_that_size_the_work_are_bounded(cli, tiny_pair, tmp_path, line,
                                                         fragment):
    (tmp_path / "c.toml").write_text("[distill]\nmax_seq_len = 100000\n")
    one_error(cli, argv_of(line, tiny_pair, tmp_path), fragment, [tmp_path])


def experiment_toml(tiny_pair) -> str:
    """The smallest experiment on the tiny pair that writes every kind of record (answers,
    safetensors signals and checkpoints, eval.jsonl, an export, the report)."""
    return "\n".join([f'target = "{tiny_pair[0]}"', f'drafter = "{tiny_pair[1]}"',
                      'tasks = ["chat", "code"]', "n_train = 4", "n_test = 3", "n_heldout = 2",
                      "max_prompt_tokens = 24", "train_response_tokens = 6",
                      "test_response_tokens = 6", "topk = 8", "top_layers = 1",
                      "batch_size = 2", "epochs = 1.0", "budgets = [1.0]", 'arms = ["uniform"]',
                      "lr = 1e-3", "overfit_epochs = 1.0", "bootstrap = 20", "n_bench = 0", ""])


def run_experiment(cfg: Path, run_dir: Path, home: Path, fsize: int | None = None):
    """``specfair experiment CFG`` in a subprocess, its files at most ``fsize`` bytes (SIGXFSZ
    ignored: the write fails with EFBIG, as on a full disk it fails with ENOSPC)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "SPECFAIR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "specfair", "experiment", str(cfg),
                           "--run-dir", str(run_dir)], capture_output=True, text=True, env=env,
                          preexec_fn=limit if fsize else None, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tiny_pair, study_home, tmp_path_factory):
    """An uninterrupted tiny experiment: ``(config, run directory)``."""
    root = tmp_path_factory.mktemp("finished")
    cfg = root / "exp.toml"
    cfg.write_text(experiment_toml(tiny_pair))
    r = run_experiment(cfg, root / "run", study_home)
    assert r.returncode == 0, r.stderr[-2000:]
    return cfg, root / "run"


def records(run_dir: Path) -> list[dict]:
    return sorted((json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()),
                  key=lambda r: json.dumps(r, sort_keys=True))


def test_a_refused_write_is_one_error_line_and_the_rerun_completes(finished_run, study_home,
                                                                    tmp_path):
    """A file-size limit (EFBIG; no space is ENOSPC, the same path) hit while safetensors
    writes the signals: was a safetensors traceback with no ``error:`` line."""
    cfg, done = finished_run
    run_dir = tmp_path / "run"
    r = run_experiment(cfg, run_dir, study_home, fsize=50_000)  # the largest shard is ~60 kB
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-2000:]
    assert "File too large (EFBIG)" in errors[0] and "rerun the same command" in errors[0]
    assert not (run_dir / "eval.jsonl").exists()  # it failed before the training
    r = run_experiment(cfg, run_dir, study_home)  # the limit lifted: resumes and completes
    assert r.returncode == 0, r.stderr[-2000:]
    assert records(run_dir) == records(done)


# ------------------------------------------------------------------------- 5. parsers

PARSER_ROWS = [
    (BENCH + " --policy fixed:²", "N of fixed:N must be an integer >= 1, got '²'"),
    (BENCH + " --policy fixed:٣", "N of fixed:N must be an integer >= 1, got '٣'"),
    (BENCH + " --policy confidence:٠.٥", "T of confidence:T must be a number in (0, 1)"),
    (BENCH + " --proposer ngram:²", "N of ngram:N must be an integer >= 1"),
    (BENCH + " --proposer hybrid:٣", "N of hybrid:N must be an integer >= 1"),
    ("generate hi --model {t} --proposer ngram:²", "N of ngram:N must be an integer >= 1"),
    (DISTILL + " --cheap-layers first:٣", "bad cheap-drafter layer spec 'first:٣'"),
]


@pytest.mark.parametrize("line, fragment", PARSER_ROWS,
                         ids=[r[0].split()[-1] for r in PARSER_ROWS])
def test_numbers_in_options_are_ascii_digits(cli, tiny_pair, tmp_path, line, fragment):
    """'²'.isdigit() is True and int('²') raises; int('٣') is 3: both are refused."""
    one_error(cli, argv_of(line, tiny_pair, tmp_path), fragment, [tmp_path])


@pytest.mark.parametrize("seed", ['"٣"', '"x"', "1.5"], ids=["arabic-digit", "word", "float"])
def test_a_suite_sources_seed_is_an_integer(cli, tiny_pair, tmp_path, seed):
    """Was: ``int(seed)`` of a suite file's source: "٣" taken as 3, 1.5 as 1, "x" a
    ValueError."""
    (tmp_path / "data.jsonl").write_text('{"task": "alpha", "prompt": "a b"}\n'
                                         '{"task": "beta", "prompt": "c d"}\n')
    (tmp_path / "suite.toml").write_text('[sources.s]\nformat = "jsonl"\npath = "data.jsonl"\n'
                                         f"seed = {seed}\n")
    one_error(cli, argv_of(BENCH + " --split all --suite {w}/suite.toml", tiny_pair, tmp_path),
              "source 's': seed has the wrong type", [tmp_path])


DEEP_ROWS = [  # (command line, the file written nested too deeply, fragment)
    (BENCH + " --policy table:{w}/deep.json", "deep.json",
     "policy table {w}/deep.json: not a JSON file (nested too deeply)"),
    (DISTILL + " --config {w}/deep.json", "deep.json", "{w}/deep.json: nested too deeply"),
    ("experiment {w}/exp.toml --run-dir {w}/run", "run/study_config.json",
     "{w}/run/study_config.json: not valid JSON (nested too deeply)"),
    ("report {w}/run", "run/summary.json", "{w}/run/summary.json: not valid JSON (nested too "
                                           "deeply)"),
    ("report {w}/run", "run/eval.jsonl", "{w}/run/eval.jsonl: line 1 is not valid JSON "
                                         "(nested too deeply)"),
]


@pytest.mark.parametrize("line, deep, fragment", DEEP_ROWS,
                         ids=["policy", "distill", "study_config", "summary", "eval"])
def test_json_nested_too_deeply_is_one_error(cli, tiny_pair, tmp_path, line, deep, fragment):
    """Was: RecursionError out of the policy-table, study_config.json and summary.json
    readers (and the JSONL records' reader)."""
    (tmp_path / "exp.toml").write_text(experiment_toml(tiny_pair))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    (tmp_path / deep).write_text(DEEP + ('\n{"a": 1}\n' if deep.endswith(".jsonl") else ""))
    one_error(cli, argv_of(line, tiny_pair, tmp_path), fragment.format(w=tmp_path),
              [tmp_path])


def deep_model(tiny_pair, root: Path, what: str) -> Path:
    """A copy of the tiny drafter whose ``config.json`` or safetensors header is nested too
    deeply."""
    import struct

    d = root / f"deep_{what}"
    shutil.copytree(tiny_pair[1], d)
    if what == "config":
        (d / "config.json").write_text(DEEP)
    else:
        header = DEEP.encode()
        (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return d


@pytest.mark.parametrize("line, fragment", [
    (BENCH + " --target {w}/deep_config", "deep_config: unreadable config.json (nested too "
                                          "deeply)"),
    ("generate hi --model {w}/deep_header", "model.safetensors: not a valid safetensors file "
                                            "(the header is not JSON)"),
], ids=["config.json", "safetensors-header"])
def test_a_model_file_nested_too_deeply_is_one_error(cli, tiny_pair, tmp_path, line, fragment):
    """Was: RecursionError out of the model's config (context check) and the safetensors
    header reader."""
    deep_model(tiny_pair, tmp_path, "config" if "config" in line else "header")
    one_error(cli, argv_of(line, tiny_pair, tmp_path), fragment, [tmp_path])


# ------------------------------------------------------- 6. bad input accepted silently

def test_a_data_file_edited_in_place_at_the_same_size_is_refused(tmp_path, monkeypatch):
    """Was: trusted when its size and mtime were as recorded; now rehashed on every use."""
    from specfair.tasks.study import load_study_suite

    home = tmp_path / "home"
    monkeypatch.setenv("SPECFAIR_HOME", str(home))
    write_study_sources(home / "data")
    path = home / "data" / "hsk" / "sentences.json"
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b"park", b"pork"))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    with pytest.raises(SpecfairError, match=r"sentences\.json changed since it was fetched.*"
                                            r"specfair data fetch hsk --force"):
        load_study_suite(tasks=["translation_zh_en"])


def test_report_refuses_a_corrupt_record_as_the_experiment_does(cli, finished_run, study_home,
                                                                tmp_path, monkeypatch):
    """Was: `specfair report` rebuilt the report from records `experiment` refuses."""
    cfg, done = finished_run
    run = tmp_path / "run"
    shutil.copytree(done, run)
    lines = (run / "eval.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # a corrupt middle line
    (run / "eval.jsonl").write_text("".join(lines))
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    said = f"{run / 'eval.jsonl'}: line 2 is not valid JSON"
    by_report = one_error(cli, ["report", run], said, [tmp_path])
    by_experiment = one_error(cli, ["experiment", cfg, "--run-dir", run], said, [tmp_path])
    assert by_report.split(" (")[0] == by_experiment.split(" (")[0]


def test_n_test_above_the_data_is_an_error_before_anything_runs(cli, tiny_pair, study_home,
                                                                 tmp_path, monkeypatch):
    """Was: clamped silently to what the data hold (a few test prompts per task)."""
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    cfg = tmp_path / "s.toml"
    cfg.write_text(experiment_toml(tiny_pair).replace("n_test = 3", "n_test = 25"))
    one_error(cli, ["experiment", cfg, "--run-dir", tmp_path / "run"],
              "n_test = 25 in the top level must be at most", [tmp_path, study_home])


def test_the_packaged_configs_fit_the_data_they_name():
    """n_test of every packaged config within the smallest test split measured with the data
    `specfair data fetch sharegpt hsk` gives (46 test prompts: zh and the HSK translations)."""
    assert all(StudyConfig.load(c).n_test <= 46 for c in ("demo", "study", "full"))


def test_the_legacy_kind_key_takes_only_study(tiny_pair, tmp_path):
    """Was: any value of ``kind`` ignored."""
    cfg = tmp_path / "s.toml"
    for kind in ("bench", ""):
        cfg.write_text(study_toml(tiny_pair).replace('kind = "study"', f"kind = {kind!r}"))
        with pytest.raises(SpecfairError, match=f"kind = {kind!r} in the top level must be "
                                                "'study' or left out"):
            StudyConfig.load(cfg)
    cfg.write_text(study_toml(tiny_pair))  # kind = "study": the files of the two-pipeline days
    assert StudyConfig.load(cfg).n_test == 3


@pytest.mark.parametrize("line", [BENCH, "generate hi --model {t} --drafter {d}"],
                         ids=["bench", "generate"])
def test_an_empty_proposer_is_refused_like_an_empty_policy(cli, tiny_pair, tmp_path, line):
    """Was: ``--proposer ''`` fell back to the default while ``--policy ''`` was refused."""
    one_error(cli, argv_of(line + " --proposer ''", tiny_pair, tmp_path),
              "proposer must be one of model | ngram[:N] | hybrid[:N] | suffix[:DIR] | "
              "suffix-hybrid[:DIR], got ''", [tmp_path])
    one_error(cli, argv_of(line + " --policy ''", tiny_pair, tmp_path),
              "--policy '': expected fixed:N", [tmp_path])


TABLE_ROWS = [
    ({"code": "3"}, "gamma of 'code' must be an integer >= 1, got '3'"),
    ({"cdoe": 3}, "task 'cdoe' is not one of the suite's tasks; did you mean 'code'?"),
]


@pytest.mark.parametrize("gamma, fragment", TABLE_ROWS, ids=["str", "task"])
def test_a_policy_table_is_strict(cli, tiny_pair, tmp_path, gamma, fragment):
    (tmp_path / "p.json").write_text(json.dumps(
        {"format": "specfair-policy", "gamma": gamma, "global_gamma": 3}))
    one_error(cli, argv_of(BENCH + " --policy table:{w}/p.json", tiny_pair, tmp_path),
              fragment, [tmp_path])
