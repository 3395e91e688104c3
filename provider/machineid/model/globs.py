"""The globs of delegated join rules: '*' is any run of characters ('/' and ':' included), '?' one character,
everything else literal (no classes). One definition, so the cluster that matches claims against them
(cluster/oidc/rules.py) and the review that judges what they admit (review/delegated.py) read them alike."""

from __future__ import annotations

import re
from functools import lru_cache

WILDCARDS = ("*", "?")


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def glob_match(pattern: str, value: str) -> bool:
    return _compiled(pattern).fullmatch(value) is not None


def matches_every_value(pattern: str) -> bool:
    """Whether the glob matches every non-empty value. Exact: a literal character leaves out every value made of
    other characters, so only wildcards can; '*' is needed for values of any length, and a second '?' leaves out
    the values of one character."""
    return bool(pattern) and set(pattern) <= set(WILDCARDS) and "*" in pattern and pattern.count("?") <= 1


def fixed_segment(pattern: str, sep: str = "/") -> str | None:
    """The first segment (up to sep) that every value the glob matches starts with, when the glob fixes it: its
    text before the first sep has no wildcard. None otherwise: a wildcard there admits other segments (judged
    conservatively: a '?' standing for the sep itself is not worked out)."""
    head = pattern.partition(sep)[0]
    return None if not head or any(w in head for w in WILDCARDS) else head
