"""Nasty versions of real webhook bodies, for the parsers' "an order, nothing, or
UnreadablePayload: never anything else" tests.

Hypothesis is not a dependency of the project, so this is a small seeded mutator instead:
each case puts one to three nasty values (wrong types, non-finite and huge numbers, strings
that look like numbers or dates, deep nesting...) at random places of a real fixture, at
any depth, or deletes the key there. The seed is fixed, so a failure names a case that
fails again the same way.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

Path = tuple[str | int, ...]


def _nested(depth: int) -> Any:
    value: Any = {"amount": "1.00"}
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


NASTY_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    2.5,
    1e308,
    float("nan"),
    float("inf"),
    10**40,
    "",
    "   ",
    "2",
    "-3",
    "1e30",
    "NaN",
    "Infinity",
    "-0.00",
    "12,50",
    "0x1F",
    "١٢٣",
    "nul\x00byte",
    "z" * 300,
    "2024-05-14T10:21:33",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "http://[::1",
    [],
    [1, "a", None],
    {},
    {"amount": "1e999999", "currency_code": "EUR"},
    {"presentment_money": {"amount": "NaN", "currency_code": "???"}},
    _nested(150),
)
"""What a theme, an app or a proxy has been seen to put, or could put, where a value goes."""

LEAKABLE = tuple(v for v in NASTY_VALUES if isinstance(v, str) and len(v.strip()) >= 4)
"""Nasty strings long enough that finding one in a reason or a note means a value leaked."""


def mutations(body: dict[str, Any], count: int, seed: int) -> Iterator[tuple[str, Any]]:
    """``count`` mutated deep copies of ``body``, each with a description of what changed."""
    rng = random.Random(seed)
    for _ in range(count):
        mutated = copy.deepcopy(body)
        changes = []
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(_paths(mutated))
            if rng.random() < 0.15 and path:
                _delete(mutated, path)
                changes.append(f"del {_show(path)}")
            else:
                value = rng.choice(NASTY_VALUES)
                mutated = _replace(mutated, path, copy.deepcopy(value))
                changes.append(f"{_show(path)} = {_describe(value)}")
        yield "; ".join(changes), mutated


def _paths(value: Any, prefix: Path = (), depth: int = 0) -> list[Path]:
    """Every place in ``value``, the root included (a shallow walk of deep nesting)."""
    found = [prefix]
    if depth > 8:
        return found
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        found += _paths(child, (*prefix, key), depth + 1)
    return found


def _replace(root: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return root


def _delete(root: Any, path: Path) -> None:
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


def _show(path: Path) -> str:
    return "".join(f"[{key!r}]" for key in path) or "body"


def _describe(value: Any) -> str:
    if isinstance(value, dict | list) and len(repr(value)) > 60:
        return f"<nested {type(value).__name__}>"
    return repr(value)[:60]
