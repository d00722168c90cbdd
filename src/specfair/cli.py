"""The ``specfair`` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from specfair.errors import SpecfairError

app = typer.Typer(
    name="specfair",
    help="Measure and fix the disparate speed-ups of speculative decoding across tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Fetch, list and convert models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

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


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str, typer.Option(help="Short name, HF id, local dir or .gguf file.")] = (
        "qwen2.5-coder-1.5b-instruct"
    ),
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    dtype: Annotated[str, typer.Option(help="auto|bfloat16|float32")] = "auto",
    device: Annotated[str, typer.Option(help="auto|cpu|cuda")] = "auto",
) -> None:
    """Apply the chat template and stream a greedy answer (a smoke test of the weights)."""
    from specfair.models.smoke import stream_greedy

    stream_greedy(model, prompt, max_new_tokens=max_new_tokens, dtype=dtype, device=device)


# (further commands are registered below by their modules' sections)


def main() -> None:
    try:
        app()
    except SpecfairError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


_ = Path  # used by later commands
