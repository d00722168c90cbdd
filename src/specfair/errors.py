"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class SpecfairError(Exception):
    """An error caused by bad input (file, model, option) rather than a bug."""
