"""File-name rules that pair degraded inputs with their clean targets.

A rule is a list of strategies; a strategy is a pair of key functions (input stem -> key,
target stem -> key). An input is paired with the target whose key equals its own under
the first strategy that finds one. Keys ignore folders and extensions, so ``1.png`` pairs
with ``1.jpg``. A key shared by two targets is ambiguous and pairs nothing.

Named rules (``DatasetSpec.match``):

``exact``
    same stem: ``0042.png`` <-> ``0042.png``.
``prefix``
    the stems agree after a leading word and separator: ``rain-001`` <-> ``norain-001``.
``many_to_one``
    several inputs per target, numbered after an underscore or dash:
    ``12_3.jpg`` <-> ``12.jpg``.
``auto``
    ``exact``, then ``prefix``, then ``many_to_one`` (also after the prefix).
``regex``
    the named group ``key`` of two user regular expressions, matched on whole stems.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KeyFn = Callable[[str], "str | None"]
Strategy = tuple[KeyFn, KeyFn]

_LEADING_WORD = re.compile(r"^[A-Za-z]+[-_ ]?(?=.)")
_TRAILING_INDEX = re.compile(r"[-_]\d+$")


def stem(name: str) -> str:
    """The name itself: the key of the ``exact`` rule."""
    return name


def strip_prefix(name: str) -> str | None:
    """``rain-001`` -> ``001``; ``None`` when there is no leading word to strip."""
    stripped = _LEADING_WORD.sub("", name)
    return stripped if stripped != name else None


def strip_index(name: str) -> str | None:
    """``12_3`` -> ``12``; ``None`` when the name does not end in ``_N`` or ``-N``."""
    stripped = _TRAILING_INDEX.sub("", name)
    return stripped if stripped not in (name, "") else None


def _then(first: KeyFn, second: KeyFn) -> KeyFn:
    def key(name: str) -> str | None:
        inner = first(name)
        return None if inner is None else second(inner)

    return key


def regex_key(pattern: str) -> KeyFn:
    """Key = the ``key`` group of ``pattern`` matched against the whole stem."""
    compiled = re.compile(pattern)

    def key(name: str) -> str | None:
        found = compiled.fullmatch(name)
        return None if found is None else found.group("key")

    return key


def rule_strategies(rule: str, input_regex: str = "", target_regex: str = "") -> list[Strategy]:
    """Strategies of a named rule (see the module docstring)."""
    exact = (stem, stem)
    prefix = (strip_prefix, strip_prefix)
    many = (strip_index, stem)
    rules: dict[str, list[Strategy]] = {
        "exact": [exact],
        "prefix": [prefix],
        "many_to_one": [many],
        "auto": [exact, prefix, many, (_then(strip_prefix, strip_index), strip_prefix)],
    }
    if rule == "regex":
        return [(regex_key(input_regex), regex_key(target_regex))]
    if rule not in rules:
        raise ValueError(f"unknown name-matching rule {rule!r}")
    return rules[rule]


@dataclass(frozen=True)
class Matching:
    """Result of :func:`match_files`: pairs in input order, and what found no partner."""

    pairs: list[tuple[Path, Path]]
    unmatched_inputs: list[Path]
    unmatched_targets: list[Path]


def match_files(
    inputs: Sequence[Path], targets: Sequence[Path], strategies: Sequence[Strategy]
) -> Matching:
    """Pair ``inputs`` with ``targets`` by the first strategy that gives an input a partner."""
    indexes = [_index(targets, target_key) for _, target_key in strategies]
    pairs: list[tuple[Path, Path]] = []
    unmatched: list[Path] = []
    used: set[Path] = set()
    for path in inputs:
        partner = None
        for (input_key, _), index in zip(strategies, indexes, strict=True):
            key = input_key(path.stem)
            if key is not None and key in index:
                partner = index[key]
                break
        if partner is None:
            unmatched.append(path)
        else:
            pairs.append((path, partner))
            used.add(partner)
    return Matching(pairs, unmatched, [path for path in targets if path not in used])


def _index(targets: Sequence[Path], key_fn: KeyFn) -> dict[str, Path]:
    """Key -> target, leaving out keys that two targets share."""
    index: dict[str, Path] = {}
    ambiguous: set[str] = set()
    for path in targets:
        key = key_fn(path.stem)
        if key is None:
            continue
        if key in index:
            ambiguous.add(key)
        index[key] = path
    for key in ambiguous:
        del index[key]
    return index
