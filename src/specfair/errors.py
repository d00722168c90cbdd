"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class SpecfairError(Exception):
    """An error caused by bad input (file, model, option) rather than a bug."""


def command_failed(cmd: list[str], returncode: int, output: str | None, lines: int = 3) -> str:
    """A failed external command for an error message: the command as a shell would take it,
    its exit status and the last ``lines`` lines it printed (or "no output")."""
    import shlex

    tail = [x.strip() for x in (output or "").strip().splitlines() if x.strip()][-lines:]
    said = " | ".join(tail) if tail else "no output"
    return f"`{shlex.join(cmd)}` failed (exit {returncode}): {said}"
