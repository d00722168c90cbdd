"""``specfair experiment study`` against bad settings (the twin of ``test_bad_inputs.py`` for the
study's config file): each row must end with ONE ``error:`` line naming the file and the key,
exit status 2, no traceback, and no new file or directory. The study data are in place (small
files), so a row fails on its setting and not on missing data.

A row is ``(TOML lines replacing or adding settings, expected fragment of the error)``;
``{w}`` is the (watched) working directory, also the current directory.
"""

from __future__ import annotations

import pytest
from study_data import write_study_sources
from test_bad_inputs import tree

from specfair.errors import SpecfairError
from specfair.study.config import StudyConfig

BASE = {"n_train": "4", "n_test": "3", "n_heldout": "2", "max_prompt_tokens": "24",
        "train_response_tokens": "6", "test_response_tokens": "6", "topk": "8",
        "top_layers": "1", "batch_size": "2", "epochs": "1.0", "budgets": "[0.5, 1.0]",
        "lr": "1e-3", "bootstrap": "50"}
TOP = "in the top level must be"

ROWS = [
    ("lr = -1", f"lr = -1 {TOP} a finite number > 0"),
    ("lr = nan", f"lr = nan {TOP} a finite number > 0"),
    ("lr = inf", f"lr = inf {TOP} a finite number > 0"),
    ('lr = "fast"', "lr = 'fast' in the top level should be a number"),
    ("lr = 0", f"lr = 0 {TOP} a finite number > 0"),
    ("epochs = -1", f"epochs = -1 {TOP} a finite number in (0, 100]"),
    ("overfit_lr = 0", f"overfit_lr = 0 {TOP} a finite number > 0"),
    ("bootstrap = 0", f"bootstrap = 0 {TOP} an integer in [1, 100000]"),
    ("tasks = []", f"tasks = [] {TOP} a non-empty list of unique strings"),
    ('tasks = ["chat", "chat"]', f"tasks = ['chat', 'chat'] {TOP} a non-empty list of unique"),
    ('tasks = "chat"', "tasks = 'chat' in the top level should be a list of strings"),
    ('tasks = ["chat", "chatt"]', "'chatt' is not one; did you mean 'chat'"),
    ("top_layers = 2", f"top_layers = 2 {TOP} an integer in [1, 1] (the layers of"),
    ("top_layers = 0", f"top_layers = 0 {TOP} an integer >= 1"),
    ("topk = 100000", f"topk = 100000 {TOP} an integer in [1, 288] (the vocabulary of"),
    ("train_response_tokens = 0", f"train_response_tokens = 0 {TOP} an integer >= 1"),
    ("disparity_temperature = 0", f"disparity_temperature = 0 {TOP} a finite number > 0"),
    ("disparity_floor = 1.5", f"disparity_floor = 1.5 {TOP} a finite number in [0, 1]"),
    ('n_train = "abc"', "n_train = 'abc' in the top level should be an integer"),
    ("n_heldout = -1", f"n_heldout = -1 {TOP} an integer >= 0"),
    ("name = 5", "name = 5 in the top level should be a string"),
    ('name = "../../x"', f"name = '../../x' {TOP} a plain name"),
    ('name = ".."', f"name = '..' {TOP} a plain name"),
    ("arms = []", f"arms = [] {TOP} a non-empty list of unique"),
    ('arms = ["uniform", "nope"]',
     f"{TOP} a non-empty list of unique names from uniform, task-mean, disparity, per-task, "
     "monolingual"),
    ("warmup_steps = -1", f"warmup_steps = -1 {TOP} an integer >= 0"),
    ("budgets = [0.5, 0.5, 1.0]", f"budgets = [0.5, 0.5, 1.0] {TOP} a non-empty list of unique"),
    ("budgets = [0.5, 1.5]", "finite numbers in (0, 1]"),
    ("budgets = []", f"budgets = [] {TOP}"),
    ('loss = "kl"', f"loss = 'kl' {TOP} one of fkl, tvd, jsd"),
    ("prompt_head_tokens = 24", f"prompt_head_tokens = 24 {TOP} an integer in [0, "
                                "max_prompt_tokens = 24)"),
    ("epoch = 2.0", "unknown key 'epoch' in the top level; did you mean 'epochs'"),
    ("seeds = []", f"seeds = [] {TOP} a non-empty list of unique integers in [0, 4294967296)"),
    ("seeds = [0, 0]", f"seeds = [0, 0] {TOP} a non-empty list of unique integers in [0, "),
    ("seeds = [-1]", f"seeds = [-1] {TOP} a non-empty list of unique integers in [0, "),
    ("seeds = 1", "seeds = 1 in the top level should be a list of integers"),
    ("seeds = [0.5]", "seeds = [0.5] in the top level should be a list of integers"),
    ("prompt_fractions = [0]", f"prompt_fractions = [0] {TOP} a list of unique finite numbers "
                               "in (0, 1]"),
    ("prompt_fractions = [0.5, 0.5]", f"prompt_fractions = [0.5, 0.5] {TOP} a list of unique"),
    ("prompt_fractions = [1.5]", f"prompt_fractions = [1.5] {TOP} a list of unique finite"),
    ("prompt_fractions = nan", "prompt_fractions = nan in the top level should be a list of"),
    ('dose_arm = "nope"', f"dose_arm = 'nope' {TOP} one of uniform, task-mean, disparity, "
                          "per-task"),
    # the monolingual arm trains on other text than the dose's: no dose of its own
    ('arms = ["monolingual"]\ndose_arm = "monolingual"\ndose_tokens = [1500]',
     f"dose_arm = 'monolingual' {TOP} one of uniform, task-mean, disparity, per-task"),
    ('arms = ["per-task"]\nprompt_fractions = [0.5]',
     f"dose_arm = 'uniform' {TOP} one of this study's arms (per-task) when prompt_fractions"),
    ("seed = [0, 1]", "seed = [0, 1] in the top level should be an integer"),
    # the data dose in supervised tokens and per-task counts (issue 29)
    ("dose_tokens = [1500, 0]", f"dose_tokens = [1500, 0] {TOP} a list of unique integers in "
                                "[1, 100000000]"),
    ("dose_tokens = [1500]\nprompt_fractions = [0.5]",
     f"dose_tokens = [1500] {TOP} [] when prompt_fractions is set"),
    ('dose_tasks = ["code"]', f"dose_tasks = ['code'] {TOP} [] without a data dose"),
    ('dose_tokens = [1500]\ndose_tasks = ["cdoe"]', "is not one; did you mean 'code'?"),
    ('arms = ["per-task"]\ndose_tokens = [1500]',
     f"dose_arm = 'uniform' {TOP} one of this study's arms (per-task) when dose_tokens"),
    ("n_bench_per_task = {code = -1}", f"n_bench_per_task = {{'code': -1}} {TOP} a table of "
                                       "integers >= 0 (code = -1)"),
    ("n_train_per_task = {code = 0}", f"{TOP} a table of integers >= 1 (code = 0)"),
    ("n_test_per_task = {chatt = 3}", "'chatt' is not one; did you mean 'chat'?"),
    ("n_test_per_task = {code = 3.5}", "should be a table of integers"),
    ("n_test_per_task = {code = 100}", f"n_test_per_task = {{'code': 100}} {TOP} at most "),
    ("seedss = [0, 1]", "unknown key 'seedss' in the top level; did you mean 'seeds'"),
    # the timed stage's drafting policies (issue 29, item 5)
    ('timed_policies = ["fixed:5", "sometimes"]', f"timed_policies = ['fixed:5', 'sometimes'] "
                                                 f"{TOP} POLICY[+PROPOSER] strings"),
    ('timed_policies = ["adaptive+hybrid"]', f"{TOP} a list with fixed:5 (the stage's own"),
    ('timed_policies = ["fixed:5", "adaptive+ngram"]', "'adaptive+ngram': proposer ngram "
                                                      "drafts without the drafter"),
    ('timed_policies = "adaptive"', "timed_policies = 'adaptive' in the top level should be a "
                                    "list of strings"),
    ("timed_hf = 1", "timed_hf = 1 in the top level should be true or false"),
]


def study_toml(tiny_pair, edit: str = "") -> str:
    """The tiny study's TOML with ``edit`` (``key = value`` lines) replacing or adding keys."""
    settings = dict(BASE, target=f'"{tiny_pair[0]}"', drafter=f'"{tiny_pair[1]}"')
    for line in filter(None, edit.splitlines()):
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip()
    return 'kind = "study"\n' + "".join(f"{k} = {v}\n" for k, v in settings.items())


@pytest.fixture(scope="module")
def study_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("study_home")
    with pytest.MonkeyPatch.context() as mp:  # the cache records are made under this home
        mp.setenv("SPECFAIR_HOME", str(home))
        write_study_sources(home / "data")
    return home


@pytest.mark.parametrize("edit, fragment", ROWS,
                         ids=[f"{i:02d}-{r[0][:30]}" for i, r in enumerate(ROWS)])
def test_bad_study_setting(cli, tiny_pair, study_home, tmp_path, monkeypatch, edit, fragment):
    monkeypatch.setenv("SPECFAIR_HOME", str(study_home))
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    cfg = cfg_dir / "bad_study.toml"
    cfg.write_text(study_toml(tiny_pair, edit))
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)  # no --run-dir: runs/NAME under the current directory
    before = tree(tmp_path), tree(study_home)
    code, out, err = cli("experiment", cfg)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len([x for x in lines if x.startswith("error:")]) == 1, err
    assert lines[-1].startswith(f"error: {cfg}"), lines[-1]  # names the file
    assert fragment in lines[-1], lines[-1]
    assert code == 2
    assert (tree(tmp_path), tree(study_home)) == before  # nothing created


def test_budgets_are_sorted_for_the_user(tiny_pair, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(study_toml(tiny_pair, "budgets = [1.0, 0.25, 0.5]\n"
                                         "prompt_fractions = [1.0, 0.25]"))
    loaded = StudyConfig.load(cfg)
    assert loaded.budgets == [0.25, 0.5, 1.0]  # 1.0 is the fully trained model
    assert loaded.prompt_fractions == [0.25, 1.0] and loaded.seeds == [0]


def test_per_task_counts_and_dose_tokens_load(tiny_pair, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(study_toml(tiny_pair, "dose_tokens = [40, 10, 20]\n"
                                         'dose_tasks = ["code", "chat"]\n'
                                         "n_bench_per_task = {code = 3}\n"
                                         "n_train_per_task = {chat = 2}"))
    loaded = StudyConfig.load(cfg)
    assert loaded.dose_tokens == [10, 20, 40] == loaded.dose_points  # sorted for the user
    assert loaded.doses_task("code") and not loaded.doses_task("math")
    assert loaded.per_task("n_bench", "code") == 3 and loaded.per_task("n_bench", "chat") == 10
    assert loaded.per_task("n_train", "chat") == 2 and loaded.per_task("n_train", "code") == 4
    assert StudyConfig.from_dict(loaded.to_dict()) == loaded  # study_config.json round trip


def test_the_packaged_study_has_three_seeds_and_a_data_dose():
    cfg = StudyConfig.load("study")
    assert len(cfg.seeds) >= 3 and cfg.prompt_fractions and cfg.dose_arm in cfg.arms


@pytest.mark.parametrize("settings, message", [
    # 10 sequences of 10 tokens, 2 a batch: one batch is 20 of the 100 tokens at budget 1.0
    ({"budgets": [0.1, 1.0]}, r"budgets = \[0.1, 1.0\] .* at least 0.2 apart and from 0"),
    ({"budgets": [0.5, 0.6, 1.0]}, r"at least 0.2 apart"),
    ({"epochs": 0.1}, r"epochs = 0.1 .* must be a finite number >= 0.2 \(one batch is up to 20"),
    ({"arms": ["uniform", "per-task"], "tasks": ["a", "b"], "budgets": [0.3, 1.0]},
     r"at least 0.4 apart .*per-task arm: a task's own sequences"),
])
def test_budgets_within_one_batch_are_refused(settings, message):
    cfg = StudyConfig(**{"arms": ["uniform"], "tasks": ["a"], "batch_size": 2, "epochs": 1.0,
                         **settings})
    tasks = [cfg.tasks[i % len(cfg.tasks)] for i in range(10)]
    with pytest.raises(SpecfairError, match=message):
        cfg.check_budgets([10] * 10, tasks)
    StudyConfig(**{**cfg.to_dict(), "budgets": [0.5, 1.0], "epochs": 1.0}).check_budgets(
        [10] * 10, tasks)  # one batch apart or more: accepted
