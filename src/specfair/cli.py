"""The ``specfair`` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from specfair.cli_groups import GROUPS, DataRootOpt, DrafterOpt, SuiteOpt, TargetOpt
from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_GAMMA, DEFAULT_TARGET
from specfair.errors import SpecfairError

# errnos of a write the machine refused (not bad input, not a bug): one `error:` line
WRITE_FAILURES = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

app = typer.Typer(
    name="specfair",
    help="Measure and fix the disparate speed-ups of speculative decoding across tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)

PolicyOpt = Annotated[
    str | None,
    typer.Option(help="Drafting policy: fixed:N | heuristic | confidence:T | table:FILE | "
                 "adaptive (the verify curve priced, a step may draft nothing) | adaptive-flat "
                 "(the rule before it) (default fixed:--gamma)."),
]
GammaOpt = Annotated[
    int | None,
    typer.Option(help=f"Drafts per step (fixed:N); with heuristic the start, with confidence "
                 f"and adaptive[-flat] the most. Default {DEFAULT_GAMMA}."),
]
ProposerOpt = Annotated[
    str | None,
    typer.Option(help="model (the drafter) | ngram (prompt lookup, no drafter) | hybrid "
                 "(n-gram match, else the drafter); ngram:N / hybrid:N: a lookup step copies "
                 "up to N tokens (HF's prompt_lookup_num_tokens) and the policy sizes the "
                 "drafter's steps only; suffix[:DIR] (SuffixDecoding: the request's tokens and "
                 "the task's index DIR of `specfair index build`, no drafter) | "
                 "suffix-hybrid[:DIR] (suffix, else hybrid)."),
]


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[
        str, typer.Option(help="Short name, HF id, local dir or .gguf file.")
    ] = DEFAULT_TARGET,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    dtype: Annotated[str, typer.Option(help="auto|bfloat16|float32")] = "auto",
    device: Annotated[str, typer.Option(help="auto|cpu|cuda")] = "auto",
    kernels: Annotated[str, typer.Option(help="auto|packed|default")] = "auto",
    drafter: Annotated[
        str | None,
        typer.Option(help="Decode speculatively with this drafter (a per-task export is routed "
                          "by its task router; without one, its base drafter drafts)."),
    ] = None,
    policy: PolicyOpt = None,
    gamma: GammaOpt = None,
    proposer: ProposerOpt = None,
    task: Annotated[str | None, typer.Option(
        help="The prompt's task: picks a table policy's γ and a suffix index's task (default: "
             "the drafter export's task router, if any).")] = None,
) -> None:
    """Apply the chat template and stream a greedy answer (a smoke test of the weights); with
    --drafter, --policy, --gamma or --proposer: decode speculatively (greedy) and print the
    answer and its drafting counts."""
    if drafter is None and policy is None and gamma is None and proposer is None:
        if task is not None:
            raise SpecfairError("--task is for speculative decoding (--drafter, --policy, "
                                "--gamma or --proposer)")
        from specfair.models.smoke import stream_greedy

        stream_greedy(model, prompt, max_new_tokens, dtype=dtype, device=device, kernels=kernels)
        return
    from specfair.measure.commands import generate_command

    generate_command(model, prompt, drafter=drafter, policy=policy, gamma=gamma,
                     proposer="model" if proposer is None else proposer, task=task,
                     max_new_tokens=max_new_tokens, dtype=dtype, device=device,
                     kernels=kernels)  # fmt: skip


# ----------------------------------------------------------------------------- measure

KernelsOpt = Annotated[
    str, typer.Option(help="auto|packed|default: packed = oneDNN pre-packed fp32 weights (CPU).")
]



@app.command()
def bench(
    out: Annotated[str, typer.Option(help="Output directory (bench.jsonl resumes here).")],
    target: TargetOpt = DEFAULT_TARGET,
    drafter: DrafterOpt = DEFAULT_DRAFTER,
    suite: SuiteOpt = "default",
    split: Annotated[str, typer.Option(help="train|test|all")] = "test",
    n_per_task: Annotated[int | None, typer.Option(help="At most this many prompts per task.")] = (
        None
    ),
    gamma: GammaOpt = None,
    max_new_tokens: int = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    dtype: str = "auto",
    device: str = "auto",
    kernels: KernelsOpt = "auto",
    seed: int = 0,
    data_root: DataRootOpt = None,
    backend: Annotated[
        str, typer.Option(help="hf (transformers loop) | llamacpp (llama-server) | vllm (GPU).")
    ] = "hf",
    tokenizer: Annotated[
        str | None,
        typer.Option(help="llamacpp/vllm: HF tokenizer for the chat template (default: target's)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="llamacpp: threads per server.")] = None,
    llama_server: Annotated[
        str | None, typer.Option(help="llamacpp: the llama-server binary (default: cached build).")
    ] = None,
    routing: Annotated[
        str, typer.Option(help="Per-task export: oracle (task labels) | classifier (its router).")
    ] = "oracle",
    policy: PolicyOpt = None,
    proposer: ProposerOpt = None,
) -> None:
    """Benchmark plain vs speculative decoding per task: speed-ups, acceptance, disparity.

    With --backend llamacpp, --target/--drafter are known names (their cached GGUFs) or .gguf
    files (export a fine-tuned drafter with `specfair export-gguf`)."""
    from specfair.measure.commands import bench_command

    opts: dict = {}
    if backend in ("llamacpp", "vllm") and tokenizer:
        opts["tokenizer"] = tokenizer
    if backend == "llamacpp":
        opts.update({"threads": threads, "binary": llama_server})
    bench_command(
        target, drafter, suite, out, split=split, n_per_task=n_per_task, gamma=gamma,
        max_new_tokens=max_new_tokens, temperature=temperature, dtype=dtype, device=device,
        seed=seed, kernels=kernels, data_root=data_root, backend=backend, backend_options=opts,
        routing=routing, policy=policy, proposer="model" if proposer is None else proposer,
    )  # fmt: skip


@app.command("export-gguf")
def export_gguf_cmd(
    drafter_dir: Annotated[Path, typer.Argument(help="HF drafter directory or per-task export.")],
    out: Annotated[Path, typer.Argument(help="The .gguf file to write.")],
    outtype: Annotated[str, typer.Option(help="f32|f16|bf16|q8_0|q5_0|q4_0")] = "q8_0",
    task: Annotated[
        str | None, typer.Option(help="Per-task export: the task whose drafter to export.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing .gguf file.")] = False,
) -> None:
    """Write a (fine-tuned) drafter as a GGUF file for llama.cpp (Qwen2 architecture)."""
    from specfair.backends.gguf_export import export_gguf

    path = export_gguf(drafter_dir, out, outtype=outtype, task=task, force=force)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def estimate(
    out: Annotated[str, typer.Option(help="Output directory (estimate.jsonl resumes here).")],
    target: TargetOpt = DEFAULT_TARGET,
    drafter: DrafterOpt = DEFAULT_DRAFTER,
    suite: SuiteOpt = "default",
    split: Annotated[str, typer.Option(help="train|test|all")] = "test",
    n_per_task: int | None = None,
    gamma: Annotated[
        int, typer.Option(help="γ for the predicted speed-up column.")
    ] = DEFAULT_GAMMA,
    max_new_tokens: int = 128,
    temperature: Annotated[float, typer.Option(help="Temperature of p and q for α.")] = 1.0,
    cost_ratio: Annotated[
        float | None, typer.Option(help="c = drafter step / target step; measured if omitted.")
    ] = None,
    responses: Annotated[
        Path | None, typer.Option(help="responses.jsonl of target answers to reuse.")
    ] = None,
    bench_summary: Annotated[
        Path | None, typer.Option(help="bench_summary.json to compare estimated α with.")
    ] = None,
    dtype: str = "auto",
    device: str = "auto",
    kernels: KernelsOpt = "auto",
    seed: int = 0,
    data_root: DataRootOpt = None,
) -> None:
    """Teacher-forced acceptance per task (cheap): α, cross-entropy, KL, predicted speed-up."""
    from specfair.measure.commands import estimate_command

    estimate_command(
        target, drafter, suite, out, split=split, n_per_task=n_per_task, gamma=gamma,
        max_new_tokens=max_new_tokens, temperature=temperature, cost_ratio=cost_ratio,
        responses=responses, bench_summary=bench_summary, dtype=dtype, device=device, seed=seed,
        kernels=kernels, data_root=data_root,
    )  # fmt: skip



# ----------------------------------------------------------------------------- distill


@app.command()
def distill(
    out: Annotated[str, typer.Option(help="Output directory (checkpoints, log, drafter/).")],
    target: TargetOpt = DEFAULT_TARGET,
    drafter: DrafterOpt = DEFAULT_DRAFTER,
    suite: SuiteOpt = "default",
    config: Annotated[Path | None, typer.Option(help="TOML file of DistillConfig fields.")] = None,
    weighting: Annotated[
        str | None, typer.Option(help="uniform|balanced|disparity|per-task")
    ] = None,
    loss: Annotated[str | None, typer.Option(help="fkl|rkl|tvd|jsd|ce")] = None,
    method: Annotated[str | None, typer.Option(help="lora|full|topn (top layers, cached)")] = None,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    grad_accum: int | None = None,
    cheap_layers: Annotated[
        str | None, typer.Option(help="Cheap drafter: 'first:K', 'every:N' or '0,1,5'.")
    ] = None,
    data_source: Annotated[str | None, typer.Option(help="target|reference|both")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint.")] = False,
    dtype: str = "float32",
    device: str = "auto",
) -> None:
    """Fine-tune the drafter on the suite's train split; export an HF directory."""
    from specfair.distill.commands import distill_command

    distill_command(
        out, suite=suite, target=target, drafter=drafter, config_file=config, resume=resume,
        dtype=dtype, device=device, weighting=weighting, loss=loss, method=method, steps=steps,
        lr=lr, batch_size=batch_size, grad_accum=grad_accum, cheap_layers=cheap_layers,
        data_source=data_source,
    )  # fmt: skip


# ----------------------------------------------------------------------------- experiment


@app.command()
def experiment(
    config: Annotated[
        str, typer.Argument(help="demo (what `make demo` runs: the study's tasks at fewer "
                                 "prompts and budgets), study (the CPU study), full (a "
                                 "GPU-sized study), dose (the deep data dose on the lagging "
                                 "translation tasks, issue 29) or a TOML file of StudyConfig "
                                 "keys.")
    ] = "demo",
    run_dir: Annotated[str | None, typer.Option(help="Run directory (default runs/NAME).")] = (
        None
    ),
    dtype: Annotated[str | None, typer.Option(
        help="The models' dtype, in place of the config's `dtype`: auto | float32 | bfloat16 "
             "(float32 on a CPU with bf16 runs the fp32 path of one without).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Validate the config (keys, task names, the models' configs, the "
                        "data's prompts) and print its plan; load no model, write nothing.")
    ] = False,
) -> None:
    """Run the experiment end to end, resumable (`specfair data fetch` first): target answers
    and signals, the overfit check, every arm trained to each budget and evaluated, the task
    router of the per-task arm against oracle routing, the summary, the timed stage (each
    arm's drafter exported and benchmarked against the base drafter) and the report
    (report.md, report.html)."""
    from specfair.study.config import DTYPES, StudyConfig
    from specfair.study.run import run_study

    if dtype is not None and dtype not in DTYPES:
        raise SpecfairError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    cfg = StudyConfig.load(config)
    cfg.dtype = cfg.dtype if dtype is None else dtype
    if check:
        from specfair.study.check import check_config

        print("\n".join(check_config(cfg)))
        return
    run_study(cfg, Path("runs") / cfg.name if run_dir is None else run_dir)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A `specfair experiment` run directory.")],
    screenshot: Annotated[
        Path | None, typer.Option(help="Also render report.html to this PNG (needs chromium).")
    ] = None,
) -> None:
    """Rebuild report.md and report.html from a run directory's stored records."""
    from specfair.report.commands import report_command

    report_command(run_dir, screenshot)


def _usage_error(e) -> str:
    """A click usage error on one line: the message and where to find help."""
    msg = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "specfair --help"
    return f"error: {msg} (see {where})"


def write_failure(e: BaseException) -> str | None:
    """The message of a write the machine refused (no space, over a file-size limit or a
    quota: :data:`WRITE_FAILURES`), as an OSError or as safetensors' error ``... (os error
    N)``; None for any other exception."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None and (m := re.search(r"\(os error (\d+)\)", str(e))):
        code = int(m.group(1))
    if code not in WRITE_FAILURES:
        cause = e.__cause__ or e.__context__
        return write_failure(cause) if cause is not None and cause is not e else None
    where = f"writing {e.filename}" if getattr(e, "filename", None) else "a write failed"
    return (f"{where}: {os.strerror(code)} ({errno.errorcode[code]}); free space or raise the "
            "limit, then rerun the same command: it resumes")


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks stop servers, files are closed


def main(argv: list[str] | None = None) -> None:
    """The ``specfair`` entry point: bad input of any kind (options, files, models) ends with
    one ``error:`` line on stderr and exit status 2."""
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code = app(args=argv, prog_name="specfair", standalone_mode=False)
    except SpecfairError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except typer.TyperException as e:  # usage errors (typer's bundled click)
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.format_message(), file=sys.stderr)
        else:
            print(_usage_error(e), file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a write the machine refused, also inside safetensors (Rust)
        if (why := write_failure(e)) is None:
            raise
        print(f"error: {why}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)
