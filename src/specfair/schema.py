"""Checking configuration tables against typed schemas, before any work starts.

Every error names the file (``origin``), the section and the key, and suggests the closest
valid name (:func:`difflib.get_close_matches`). Types are Python type hints: ``int``,
``float`` (ints accepted), ``str``, ``bool``, ``None``, unions, ``list[X]``, ``tuple[X, ...]``,
``dict[K, V]`` and ``Any``; a boolean is never accepted where a number is expected, nor a
non-finite number (nan, inf) anywhere. A :class:`Rule` adds what a value must be beyond its
type (a range, a choice, a non-empty list of unique items, a plain name); its error names the
allowed values, e.g. ``runs.toml: lr = -1 in [distill] must be a finite number > 0``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError


def suggest(name: object, valid: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, else the list of valid names."""
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (valid: {', '.join(valid)})" if valid else ""


SEED_LIMIT = 2**32  # seeds are in [0, 2**32): numpy's limit, and torch's seeds are taken there


def ascii_int(text: object) -> int | None:
    """``text`` as a non-negative integer if it is ASCII digits only (``"12"``; not ``"²"``,
    ``"٣"``, ``"1_0"``, ``" 1"`` or ``"+1"``, which ``str.isdigit``/``int`` let through),
    else None. The one parser of numbers in options and specs."""
    return int(text) if isinstance(text, str) and re.fullmatch(r"[0-9]+", text) else None


def ascii_float(text: object) -> float | None:
    """``text`` as a float if it is an ASCII decimal number (``"0.5"``, ``".5"``, ``"1e-3"``),
    else None (no ``nan``, ``inf``, other scripts' digits or underscores)."""
    ok = isinstance(text, str) and re.fullmatch(
        r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text)
    return float(text) if ok else None


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ValueError: nesting too deep for the parser
    (a RecursionError otherwise) included."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: str | Path, what: str = "") -> Any:
    """A JSON file a user or an earlier run handed over: missing, unreadable, not UTF-8, not
    JSON or nested too deeply is one :class:`SpecfairError` naming the file (``what``: how to
    call it, e.g. ``"policy table"``)."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise SpecfairError(f"{name}: no such file")
    if not path.is_file():
        raise SpecfairError(f"{name}: not a file")
    try:
        return loads_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise SpecfairError(f"{name}: not valid JSON ({e})") from e


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


def _finite(value: Any) -> bool:
    """No nan or inf in ``value`` or its list (a table is checked as its own section)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _bound(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: bounds (``gt``, ``ge``, ``lt``, ``le``), one of
    ``choices``, a ``plain`` file name (no path), a ``nonempty`` list of ``unique`` items, each
    item checked by ``each``. ``None`` (where the type allows it) always passes."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    plain: bool = False
    nonempty: bool = False
    unique: bool = False
    each: Rule | None = None

    def ok(self, v: Any) -> bool:
        if v is None:
            return True
        if isinstance(v, (list, tuple)):
            return ((not self.nonempty or len(v) > 0)
                    and (not self.unique or len(set(v)) == len(v))
                    and (self.each is None or all(self.each.ok(x) for x in v)))
        if self.choices and v not in self.choices:
            return False
        if self.plain and (not isinstance(v, str) or not v.strip() or v in (".", "..")
                           or any(c in v for c in "/\\:") or v != v.strip()):
            return False
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return ((self.gt is None or v > self.gt) and (self.ge is None or v >= self.ge)
                    and (self.lt is None or v < self.lt) and (self.le is None or v <= self.le))
        return True

    def describe(self, hint: Any = float) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.plain:
            return "a plain name (not empty, no path separator, not '.' or '..')"
        if self.nonempty or self.unique or self.each is not None:
            words = ["a"] + ["non-empty"] * self.nonempty + ["list of"] + ["unique"] * self.unique
            if self.each is not None and self.each.choices:
                return " ".join(words) + " names from " + ", ".join(map(str, self.each.choices))
            item = self.each.describe(_item_hint(hint)) if self.each else describe(_item_hint(hint))
            return " ".join(words) + " " + _plural(item)
        base = "an integer" if _is_int(hint) else "a finite number"
        low = (f"> {_bound(self.gt)}" if self.gt is not None
               else f">= {_bound(self.ge)}" if self.ge is not None else None)
        high = (f"< {_bound(self.lt)}" if self.lt is not None
                else f"<= {_bound(self.le)}" if self.le is not None else None)
        if low and high:
            lo = self.gt if self.gt is not None else self.ge
            hi = self.lt if self.lt is not None else self.le
            return (f"{base} in {'(' if self.gt is not None else '['}{_bound(lo)}, "
                    f"{_bound(hi)}{')' if self.lt is not None else ']'}")
        return f"{base} {low or high}" if low or high else base


def _is_int(hint: Any) -> bool:
    args = typing.get_args(hint) or (hint,)
    return int in args and float not in args


def _item_hint(hint: Any) -> Any:
    alts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else (hint,)
    for a in alts:
        if typing.get_origin(a) in (list, tuple):
            return typing.get_args(a)[0]
    return Any


def _plural(item: str) -> str:
    """``a finite number > 0`` -> ``finite numbers > 0``; ``a string`` -> ``strings``."""
    head, _, rest = item.removeprefix("an ").removeprefix("a ").partition(" ")
    noun = {"finite": "finite", "integer": "integers", "string": "strings", "number": "numbers"}
    if head == "finite":
        first, _, rest = rest.partition(" ")
        return f"finite {first}s {rest}".strip()
    return f"{noun.get(head, head)} {rest}".strip()


def value_error(origin: str, section: str, key: str, value: Any, allowed: str) -> SpecfairError:
    """``origin: key = value in [section] must be allowed`` (one line)."""
    return SpecfairError(f"{origin}: {key} = {value!r} in {_where(section)} must be {allowed}")


def check_table(origin: str, section: str, table: Mapping, hints: Mapping[str, Any],
                rules: Mapping[str, Rule] | None = None) -> None:
    """Refuse unknown keys, values of the wrong type, non-finite numbers and values that
    break their :class:`Rule`."""
    if not isinstance(table, Mapping):
        raise SpecfairError(f"{origin}: {_where(section)} should be a table")
    check_keys(origin, section, table, hints)
    rules = rules or {}
    for key, value in table.items():
        if not matches(value, hints[key]):
            raise SpecfairError(f"{origin}: {key} = {value!r} in {_where(section)} should be "
                                f"{describe(hints[key])}")
        if (allowed := refusal(value, hints[key], rules.get(key))) is not None:
            raise value_error(origin, section, key, value, allowed)


def refusal(value: Any, hint: Any, rule: Rule | None) -> str | None:
    """None if ``value`` (of type ``hint``) is finite and keeps ``rule``, else what it must
    be."""
    if _finite(value) and (rule is None or rule.ok(value)):
        return None
    return rule.describe(hint) if rule else f"finite ({describe(hint)})"
