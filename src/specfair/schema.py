"""Checking configuration tables against typed schemas, before any work starts.

Every error names the file (``origin``), the section and the key, and suggests the closest
valid name (:func:`difflib.get_close_matches`). Types are Python type hints: ``int``,
``float`` (ints accepted), ``str``, ``bool``, ``None``, unions, ``list[X]``, ``tuple[X, ...]``,
``dict[K, V]`` and ``Any``; a boolean is never accepted where a number is expected.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from specfair.errors import SpecfairError


def suggest(name: object, valid: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, else the list of valid names."""
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (valid: {', '.join(valid)})" if valid else ""


def _where(section: str) -> str:
    return f"[{section}]" if section else "the top level"


def check_keys(origin: str, section: str, table: Mapping, valid: Iterable[str],
               what: str = "key") -> None:
    """Refuse a key of ``table`` that is not in ``valid``."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise SpecfairError(
                f"{origin}: unknown {what} {key!r} in {_where(section)}{suggest(key, valid)}")


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as parsed from TOML/JSON) fits the type hint ``hint``."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin in (list, tuple):
        elem = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(matches(v, elem) for v in value)
    if origin is dict:
        k, v = args or (Any, Any)
        return isinstance(value, dict) and all(
            matches(a, k) and matches(b, v) for a, b in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def describe(hint: Any) -> str:
    """``int``, ``a string or nothing``... for error messages."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             type(None): "nothing", dict: "a table", list: "a list"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a table of {describe(args[1]).removeprefix('a ').removeprefix('an ')}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_table(origin: str, section: str, table: Mapping, hints: Mapping[str, Any]) -> None:
    """Refuse unknown keys and values of the wrong type."""
    if not isinstance(table, Mapping):
        raise SpecfairError(f"{origin}: {_where(section)} should be a table")
    check_keys(origin, section, table, hints)
    for key, value in table.items():
        if not matches(value, hints[key]):
            raise SpecfairError(f"{origin}: {key} = {value!r} in {_where(section)} should be "
                                f"{describe(hints[key])}")
