"""Necessary literals of a regex: a cheap test that lets triage skip patterns that cannot match.

:func:`necessary_literals` walks the parsed pattern and returns a set of strings such that
every match contains at least one of them, or ``None`` when no useful set exists (then the
pattern always runs). A message is scanned once for all literals of all findings; a finding
whose literals are all absent cannot match and is skipped. This keeps a normal message well
under a millisecond with a few hundred findings.
"""

from __future__ import annotations

import re
from typing import Any

_parser: Any = getattr(re, "_parser", None)
_constants: Any = getattr(re, "_constants", None)

Lits = frozenset[str]


#: Words so common in messages that a pattern anchored on them is hardly filtered at all.
_COMMON = frozenset(
    re.findall(
        r"\w+",
        """a an and are as at be been bit but by can cant did do does dont for from get got had
        has have he her him his i if in is it its just like me my no not now of on or out over
        she since so some that the their them then there they this to too up very was we went
        were what when with you your feel felt head red took take ate day days go still really""",
    )
)


def _literal_score(lit: str) -> int:
    core = lit.strip()
    if core in _COMMON:
        return 1
    return sum(3 if ord(ch) > 0x2E80 else 1 for ch in core)


def _score(lits: Lits) -> int:
    """How selective a set is: its weakest literal (length; a Chinese character counts 3)."""
    return min(_literal_score(lit) for lit in lits)


def _best(candidates: list[Lits]) -> Lits | None:
    """The most selective candidate; a weak one (two letters) beats running on every message."""
    useful = [c for c in candidates if c and _score(c) >= 2]
    if not useful:
        return None
    return max(useful, key=lambda c: (min(_score(c), 4), -len(c)))


def _sequence(items: Any) -> Lits | None:
    c = _constants
    candidates: list[Lits] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            candidates.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if op is c.AT:
            # Anchors (\b, ^) take no characters: a literal run continues across them.
            continue
        flush()
        sub = _item(op, av)
        if sub is not None:
            candidates.append(sub)
    flush()
    return _best(candidates)


def _item(op: Any, av: Any) -> Lits | None:
    c = _constants
    if op is c.SUBPATTERN:
        return _sequence(av[-1])
    if op is c.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            sub = _sequence(branch)
            if sub is None:
                return None
            out |= sub
        return frozenset(out)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        low, _high, body = av
        return _sequence(body) if low >= 1 else None
    if op is getattr(c, "ATOMIC_GROUP", None):
        return _sequence(av)
    return None


def necessary_literals(pattern: re.Pattern[str]) -> Lits | None:
    """Strings one of which occurs in every match of ``pattern``, or ``None`` if unknown."""
    if _parser is None or _constants is None or pattern.flags & re.IGNORECASE:
        return None
    try:
        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except (re.error, TypeError, ValueError, AttributeError):
        return None
    try:
        return _sequence(parsed)
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
