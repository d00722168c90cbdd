"""Every CLI command against the classes of bad input: each row must end with ONE ``error:``
line on stderr, exit status 2, no traceback, and no new file or directory. The next bad input
someone finds becomes one more row.

Placeholders: {t}/{d} the tiny target/drafter, {in} a directory of prepared bad files
(see ``inputs``), {w} the (watched) working directory, also the current directory.
"""

from __future__ import annotations

import shlex
import struct

import pytest

PAIR = "--target {t} --drafter {d} --dtype float32 --device cpu"
BENCH = f"bench --out {{w}}/out {PAIR} --n-per-task 1 --max-new-tokens 4"
ESTIMATE = f"estimate --out {{w}}/out {PAIR} --n-per-task 1 --max-new-tokens 4"
DISTILL = f"distill --out {{w}}/out {PAIR} --steps 1"
EXPERIMENT = "experiment {in}/exp.toml --run-dir {w}/run"

ROWS = [
    # --- generate
    ("generate hi --model {t} --max-new-tokens 100000", "does not fit the context"),
    ("generate hi --model {t} --max-new-tokens 0", "--max-new-tokens"),
    ("generate hi --model {w}/nope", "not found"),
    ("generate hi --model {in}/truncated.gguf", "truncated.gguf"),
    ("generate hi --model {in}/afile", "not a Hugging Face model directory"),
    ("generate hi --model {in}/pickled", "safetensors"),
    ("generate '  ' --model {t}", "empty prompt"),
    ("generate hi --model {t} --dtype float8", "unknown dtype"),
    ("generate hi --model {t} --device tpu", "unknown device"),
    ("generate hi --model {t} --kernels fast", "unknown kernels"),
    ("generat hi", "No such command 'generat'. Did you mean 'generate'"),
    # --- bench
    (BENCH.replace("{w}/out", "{in}/afile"), "is an existing file"),
    (BENCH.replace("{w}/out", "{in}/afile/sub"), "is a file, not a directory"),
    (BENCH.replace("{w}/out", "/proc/specfair-out"), "cannot write"),
    (BENCH + " --temperature -1", "--temperature must be a finite number >= 0"),
    (BENCH + " --temperature nan", "--temperature must be a finite number >= 0"),
    (BENCH + " --max-new-tokens 100000", "does not fit the context"),
    (BENCH + " --max-new-tokens 0", "--max-new-tokens must be >= 1"),
    (BENCH + " --gamma 0", "--gamma must be >= 1"),
    (BENCH + " --gamma two", "Invalid value for '--gamma'"),
    (BENCH + " --split dev", "--split must be one of"),
    (BENCH + " --n-per-task 0", "--n-per-task must be >= 1"),
    (BENCH + " --suite {in}/latin1.toml", "not UTF-8"),
    (BENCH + " --suite {in}/invalid.toml", "invalid TOML"),
    (BENCH + " --suite {w}/nosuch.toml", "suite not found"),
    (BENCH + " --suite {in}/suite_include.toml", "include entry 'betta'"),
    (BENCH + " --target {w}/nope", "not found"),
    (BENCH + " --target {in}/truncated.gguf", "truncated.gguf"),
    (BENCH + " --drafter {in}/pickled", "safetensors"),
    (BENCH + " --dtype float8", "unknown dtype"),
    (BENCH + " --device tpu", "unknown device"),
    (BENCH + " --kernels fast", "unknown kernels"),
    (BENCH + " --routing magic", "--routing must be one of oracle, classifier"),
    # --- router (task classifier of a per-task export)
    ("router train --drafter {d}", "not a per-task drafter export"),
    ("router train --drafter {w}/nope", "not a per-task drafter export"),
    ("generate hi --model {t} --drafter {w}/nope", "not found"),
    # --- drafting policies and proposers (bench, generate)
    (BENCH + " --policy nope", "--policy 'nope': expected fixed:N | heuristic"),
    (BENCH + " --policy fixed:4 --gamma 3", "--gamma 3 contradicts --policy fixed:4"),
    (BENCH + " --policy fixed:0", "N of fixed:N must be an integer >= 1"),
    (BENCH + " --policy confidence:2", "confidence:T must be a number in (0, 1)"),
    (BENCH + " --policy table:{w}/none.json", "no such file"),
    (BENCH + " --policy table:{in}/afile", "not a JSON file"),
    (BENCH + " --policy table:{in}/afile --gamma 3", "contradicts"),
    (BENCH + " --proposer lookup", "proposer must be one of model | ngram[:N] | hybrid[:N]"),
    (BENCH + " --proposer hybrid:0", "N of hybrid:N must be an integer >= 1"),
    (BENCH + " --backend llamacpp --policy heuristic", "runs --policy fixed:N with --proposer"),
    (BENCH + " --backend llamacpp --proposer hybrid",
     "--backend llamacpp runs --policy fixed:N with --proposer model or ngram only"),
    (BENCH + " --backend llamacpp --proposer ngram --policy adaptive", "runs --policy fixed:N"),
    (BENCH + " --backend llamacpp --proposer ngram --gamma 2", "ngram needs --gamma >= 3"),
    (BENCH + " --backend vllm --proposer ngram", "vllm runs --policy fixed:N with --proposer "
                                                 "model only"),
    ("generate hi --model {t} --proposer model", "needs --drafter"),
    ("generate hi --model {t} --proposer ngram --policy fixed:0", "must be an integer >= 1"),
    ("generate hi --model {t} --policy adaptive --gamma 0", "--gamma must be an integer >= 1"),
    ("generate '  ' --model {t} --proposer ngram", "empty prompt"),
    ("generate hi --model {t} --proposer ngram --max-new-tokens 100000",
     "does not fit the context"),
    ("generate hi --model {t} --drafter {in}/pickled", "safetensors"),
    # --- estimate
    (ESTIMATE + " --temperature -1", "--temperature must be a finite number >= 0"),
    (ESTIMATE + " --cost-ratio 0", "--cost-ratio must be a finite number > 0"),
    (ESTIMATE + " --responses {w}/none.jsonl", "--responses"),
    (ESTIMATE + " --bench-summary {w}/none.json", "--bench-summary"),
    (ESTIMATE.replace("{w}/out", "{in}/afile"), "is an existing file"),
    (ESTIMATE + " --max-new-tokens 100000", "does not fit the context"),
    (ESTIMATE + " --suite {in}/latin1.toml", "not UTF-8"),
    (ESTIMATE + " --drafter {in}/truncated.gguf", "truncated.gguf"),
    # --- distill
    (DISTILL.replace("{w}/out", "{in}/afile"), "is an existing file"),
    (DISTILL + " --config {in}/latin1.toml", "latin1.toml"),
    (DISTILL + " --config {in}/distill_task.toml",
     "unknown task 'cod' in [distill.prompts_per_task]; did you mean 'code'"),
    (DISTILL + " --config {in}/distill_key.toml",
     "unknown key 'lora_rnk' in [distill]; did you mean 'lora_rank'"),
    (DISTILL + " --config {in}/distill_type.toml", "lr = 'fast' in [distill] should be a number"),
    (DISTILL + " --config {w}/none.toml", "not found"),
    (DISTILL + " --loss nope", "--loss 'nope': must be one of fkl, rkl, tvd, jsd, ce"),
    (DISTILL + " --steps 0", "--steps 0: must be an integer in [1, 1000000]"),
    (DISTILL + " --cheap-layers first:x", "first:x"),
    (DISTILL + " --resume", "no previous run"),
    (DISTILL + " --dtype float8", "unknown dtype"),
    (DISTILL + " --suite {in}/latin1.toml", "not UTF-8"),
    (DISTILL + " --drafter {in}/pickled", "safetensors"),
    # --- experiment
    ("experiment {in}/latin1.toml --run-dir {w}/run", "not UTF-8"),
    ("experiment {in}/invalid.toml --run-dir {w}/run", "invalid TOML"),
    ("experiment {w}/none.toml --run-dir {w}/run", "not found"),
    ("experiment {in}/exp_key.toml --run-dir {w}/run",
     "unknown key 'n_tset' in the top level; did you mean 'n_test'"),
    (EXPERIMENT.replace("{w}/run", "{in}/afile"), "is an existing file"),
    (EXPERIMENT + " --force report", "No such option: --force"),
    ("experiment stuyd", "experiment config not found: stuyd (a TOML file or one of demo, "
                         "study, full, dose); did you mean 'study'"),
    # --- report, tasks, models
    ("report {w}/nope", "nope"),
    ("report {in}/afile", "afile"),
    ("tasks list --suite {in}/latin1.toml", "not UTF-8"),
    ("tasks list --suite {w}/nosuch.toml", "suite not found"),
    ("tasks list --suite {in}/suite_include.toml", "include entry 'betta'"),
    ("models fetch no-such-model", "no-such-model"),
]

# --- issue #20 "safe": one safetensors-only weight reader, router.json, export-gguf outputs,
# corrupt safetensors (inputs: _safe_inputs below)
GGUF_OUT = "{w}/x.gguf"
NOT_ST = "not a valid safetensors file"
ROWS += [
    (f"export-gguf {{in}}/pickled {GGUF_OUT}", "safetensors only"),
    (f"export-gguf {{in}}/pertask_bin {GGUF_OUT} --task code",
     "no adapter_model*.safetensors (weights are read from safetensors only"),
    (f"export-gguf {{in}}/router_escape {GGUF_OUT} --task code", "leads outside the export"),
    (f"export-gguf {{in}}/router_base_escape {GGUF_OUT} --task code", "leads outside the export"),
    (f"export-gguf {{in}}/router_badjson {GGUF_OUT} --task code", "router.json: not valid JSON"),
    (f"export-gguf {{in}}/router_types {GGUF_OUT} --task code", "router.json: 'tasks' must be"),
    (f"export-gguf {{in}}/router_mode {GGUF_OUT} --task code", "router.json: mode 'zip'"),
    ("export-gguf {d} {in}/adir.gguf", "is a directory, not a .gguf file"),
    ("export-gguf {d} {in}/afile/x.gguf", "afile is a file, not a directory"),
    ("export-gguf {d} {in}/exists.gguf", "exists; pass --force to overwrite it"),
    (f"export-gguf {{in}}/truncated_st {GGUF_OUT}", f"truncated_st/model.safetensors: {NOT_ST}"),
    (f"export-gguf {{in}}/garbage_st {GGUF_OUT}", f"garbage_st/model.safetensors: {NOT_ST}"),
    ("generate hi --model {in}/truncated_st", f"truncated_st/model.safetensors: {NOT_ST}"),
    ("generate hi --model {in}/garbage_st", f"garbage_st/model.safetensors: {NOT_ST}"),
    (BENCH + " --drafter {in}/truncated_st", f"truncated_st/model.safetensors: {NOT_ST}"),
    (BENCH + " --target {in}/garbage_st", f"garbage_st/model.safetensors: {NOT_ST}"),
    (DISTILL + " --drafter {in}/garbage_st", f"garbage_st/model.safetensors: {NOT_ST}"),
]


def _safe_inputs(d, tiny_pair) -> None:
    """Model directories with corrupt safetensors, per-task exports with a pickled adapter or a
    bad router.json, and export-gguf outputs that must be refused."""
    import json
    import shutil

    import torch

    drafter = tiny_pair[1]
    weights = (drafter / "model.safetensors").read_bytes()
    for name, data in [("truncated_st", weights[: len(weights) // 2]),
                       ("garbage_st", struct.pack("<Q", 16) + b"not json at all!" + weights)]:
        shutil.copytree(drafter, d / name)
        (d / name / "model.safetensors").write_bytes(data)
    router = {"format": "specfair-task-routed/1", "mode": "adapter", "base": "base",
              "tasks": {"code": "tasks/t_code"}}
    for name, spec in [("pertask_bin", router),
                       ("router_escape", router | {"tasks": {"code": "../../../../etc"}}),
                       ("router_base_escape", router | {"base": "../../../../etc"}),
                       ("router_types", router | {"tasks": ["code"]}),
                       ("router_mode", router | {"mode": "zip"}),
                       ("router_badjson", None)]:
        shutil.copytree(drafter, d / name / "base")
        task = d / name / "tasks" / "t_code"
        task.mkdir(parents=True)
        (task / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        torch.save({"x": torch.zeros(1)}, task / "adapter_model.bin")
        text = json.dumps(spec) if spec is not None else '{"format": "specfair-task-routed/1",'
        (d / name / "router.json").write_text(text)
    (d / "adir.gguf").mkdir()
    (d / "exists.gguf").write_bytes(b"GGUF an earlier export")

# --- configuration values (types, ranges, model limits): every error names the file or the
# option, the section and the key, and what the value must be. The study's twin:
# tests/test_bad_study_inputs.py.
DCFG = DISTILL + " --config {in}/"
ROWS += [
    (DISTILL + " --lr 0", "--lr 0.0: must be a finite number > 0"),
    (DISTILL + " --lr nan", "--lr nan: must be a finite number > 0"),
    (DISTILL + " --lr inf", "--lr inf: must be a finite number > 0"),
    (DISTILL + " --batch-size 0", "--batch-size 0: must be an integer >= 1"),
    (DISTILL + " --cheap-layers first:99", "--cheap-layers 'first:99': must be layers of"),
    (DISTILL + " --method topn --loss rkl", "loss = 'rkl' in [distill] must be fkl, tvd or jsd"),
    (DCFG + "d_temp.toml", "temperature = nan in [distill] must be a finite number > 0"),
    (DCFG + "d_lr.toml", "lr = inf in [distill] must be a finite number > 0"),
    (DCFG + "d_dropout.toml", "lora_dropout = 2 in [distill] must be a finite number in [0, 1)"),
    (DCFG + "d_targets.toml", "in [distill] must be names of linear modules of"),
    (DCFG + "d_top.toml", "top_layers = 9 in [distill] must be an integer in [1, 1] (the layers"),
    (DCFG + "d_topk.toml", "topk = 100000 in [distill] must be an integer in [1, 288]"),
    (DCFG + "d_cheap.toml", "cheap_layers = '0,5' in [distill] must be layers of"),
    (DCFG + "d_wd.toml", "weight_decay = -0.1 in [distill] must be a finite number >= 0"),
    (DCFG + "d_warmup.toml", "warmup_steps = -1 in [distill] must be an integer >= 0"),
    (DCFG + "d_flat.toml", "jsd_beta = 1 in the top level must be a finite number in (0, 1)"),
    (DCFG + "d_flat_top.toml", "d_flat_top.toml: top_layers = 2 in the top level must be"),
    (DCFG + "d_weights.toml", "in [distill] must map task names to integers >= 0"),
    ("experiment {in}/e_gamma.toml --run-dir {w}/run",
     "gamma = 0 in the top level must be an integer in [1, 64]"),
    ("experiment {in}/e_name.toml", "name = '../x' in the top level must be a plain name"),
    ("experiment {in}/e_nbench.toml --run-dir {w}/run",
     "n_bench = -1 in the top level must be an integer >= 0"),
]
CONFIG_FILES = {
    "d_temp.toml": "[distill]\ntemperature = nan\n",
    "d_lr.toml": "[distill]\nlr = inf\n",
    "d_dropout.toml": "[distill]\nlora_dropout = 2\n",
    "d_targets.toml": '[distill]\nlora_targets = ["q_proj", "qkv"]\n',
    "d_top.toml": '[distill]\nmethod = "topn"\ntop_layers = 9\n',
    "d_topk.toml": '[distill]\nmethod = "topn"\ntop_layers = 1\ntopk = 100000\n',
    "d_cheap.toml": '[distill]\ncheap_layers = "0,5"\n',
    "d_wd.toml": "[distill]\nweight_decay = -0.1\n",
    "d_warmup.toml": "[distill]\nwarmup_steps = -1\n",
    "d_flat.toml": "jsd_beta = 1\n",
    "d_flat_top.toml": 'method = "topn"\ntop_layers = 2\n',
    "d_weights.toml": "[distill.prompts_per_task]\ncode = -1\n",
}
EXP_EDITS = {  # experiment files: exp.toml with these lines added
    "e_gamma.toml": "gamma = 0\n",
    "e_name.toml": 'name = "../x"\n',
    "e_nbench.toml": "n_bench = -1\n",
}


def write_config_inputs(d, exp: str) -> None:
    """The bad config files of the rows above (distill and experiment)."""
    for name, text in CONFIG_FILES.items():
        (d / name).write_text(text)
    for name, line in EXP_EDITS.items():
        (d / name).write_text(exp + line)

EXPERIMENT_TOML = """target = "{t}"
drafter = "{d}"
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_pair):
    import torch

    d = tmp_path_factory.mktemp("bad_inputs")
    t, dr = (str(p) for p in tiny_pair)
    (d / "afile").write_text("not a directory\n")
    (d / "latin1.toml").write_bytes(b'name = "caf\xe9"\n[variants.a]\nweighting = "uniform"\n')
    (d / "invalid.toml").write_text("name = \n")
    # GGUF magic, version 3, then a header cut short
    (d / "truncated.gguf").write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\x02\x00")
    pickled = d / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_pair[1] / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    for f in tiny_pair[1].iterdir():
        if f.name.startswith(("tokenizer", "special", "vocab", "merges", "chat")):
            (pickled / f.name).write_bytes(f.read_bytes())
    (d / "data.jsonl").write_text('{"task": "alpha", "prompt": "a b"}\n'
                                  '{"task": "beta", "prompt": "c d"}\n')
    (d / "suite_include.toml").write_text(
        '[sources.s]\nformat = "jsonl"\npath = "data.jsonl"\ninclude = ["alpha", "betta"]\n')
    (d / "distill_task.toml").write_text("[distill.prompts_per_task]\ncod = 2\n")
    (d / "distill_key.toml").write_text("[distill]\nlora_rnk = 2\n")
    (d / "distill_type.toml").write_text('[distill]\nlr = "fast"\n')
    exp = EXPERIMENT_TOML.format(t=t, d=dr)
    (d / "exp.toml").write_text(exp)
    (d / "exp_key.toml").write_text(exp + "n_tset = 3\n")
    _safe_inputs(d, tiny_pair)
    write_config_inputs(d, exp)
    return d


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("line, fragment", ROWS,
                         ids=[f"{i:02d}-{r[0].split()[0]}-{r[1][:40]}" for i, r in enumerate(ROWS)])
def test_bad_input(cli, inputs, tiny_pair, tmp_path, monkeypatch, line, fragment):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(t=tiny_pair[0], d=tiny_pair[1], w=tmp_path, **{"in": inputs})
            for a in shlex.split(line)]
    before = tree(tmp_path), tree(inputs)
    code, out, err = cli(*argv)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert len([x for x in lines if x.startswith("error:")]) == 1, err
    assert fragment.format(**{"in": inputs}) in lines[-1], lines[-1]
    assert code == 2
    assert (tree(tmp_path), tree(inputs)) == before  # nothing created


# ---------------------------------------------------------------- paths, caches and environment
# (env, line, fragment): the same checks as test_bad_input with environment variables set;
# {in}/paths holds a dangling symlink, a symlink loop, a directory as the lock file and a
# SPECFAIR_HOME whose cached GSM8K file gained a line after it was fetched.
CORRUPT = {"SPECFAIR_HOME": "{in}/paths/home"}
PATH_ROWS = [
    ({}, BENCH.replace("{w}/out", "''"), "--out is empty"),
    ({}, ESTIMATE.replace("{w}/out", "''"), "--out is empty"),
    ({}, DISTILL.replace("{w}/out", "''"), "--out is empty"),
    ({}, EXPERIMENT.replace("{w}/run", "''"), "--run-dir is empty"),
    ({}, BENCH.replace("{w}/out", "{in}/paths/dangling"), "is a symlink to nowhere"),
    ({}, BENCH.replace("{w}/out", "{in}/paths/dangling/sub"), "is a symlink to nowhere"),
    ({}, DISTILL.replace("{w}/out", "{in}/paths/loop"), "is a symlink loop"),
    ({}, EXPERIMENT.replace("{w}/run", "{in}/paths/loop/sub"), "is a symlink loop"),
    ({}, BENCH.replace("{w}/out", "{in}/paths/locked"), ".specfair.lock is not a regular file"),
    (CORRUPT, "data fetch gsm8k", "train.jsonl changed since it was fetched"),
    (CORRUPT, "data fetch", "`specfair data fetch gsm8k --force`"),
    (CORRUPT, "data fetch --verify mgsm gsm8k", "train.jsonl changed since it was fetched"),
    (CORRUPT, "experiment {in}/paths/study.toml --run-dir {w}/run", "--force"),
    ({"SPECFAIR_DATA": "{in}/afile"}, "data fetch gsm8k",
     "$SPECFAIR_DATA {in}/afile: not a directory"),
    ({"SPECFAIR_HOME": "{in}/afile"}, "data list", "$SPECFAIR_HOME {in}/afile: not a directory"),
    ({"SPECFAIR_HOME": "{in}/afile/sub"}, "data fetch", "not a directory ({in}/afile is a file)"),
    ({"SPECFAIR_HOME": "{in}/afile"}, "models fetch", "$SPECFAIR_HOME"),
    (CORRUPT, "data synthesize zh nope", "no synthetic recipe for ['nope']"),
    (CORRUPT, "data synthesize qa --n 0", "--n must be >= 1"),
    ({"SPECFAIR_HOME": "{in}/paths/dangling"}, "models list", "is a broken symlink"),
]


@pytest.fixture(scope="module")
def path_inputs(inputs, tiny_pair):
    from study_data import write_study_sources

    d = inputs / "paths"
    d.mkdir()
    (d / "dangling").symlink_to("nowhere")
    (d / "loop").symlink_to("loop")
    (d / "locked" / ".specfair.lock").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(d / "home"))
        write_study_sources(d / "home" / "data")
    with open(d / "home" / "data" / "gsm8k" / "train.jsonl", "a") as f:
        f.write("a line added later\n")
    (d / "study.toml").write_text(f'kind = "study"\ntarget = "{tiny_pair[0]}"\n'
                                  f'drafter = "{tiny_pair[1]}"\n')
    return inputs


@pytest.mark.parametrize("env, line, fragment", PATH_ROWS,
                         ids=[f"{i:02d}-{r[1].split()[0]}-{r[2][:40]}"
                              for i, r in enumerate(PATH_ROWS)])
def test_bad_path_input(cli, path_inputs, tiny_pair, tmp_path, monkeypatch, env, line, fragment):
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(**{"in": path_inputs}))
    test_bad_input(cli, path_inputs, tiny_pair, tmp_path, monkeypatch, line, fragment)
