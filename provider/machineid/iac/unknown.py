"""The neutral marker for a value not known yet (a computed output of a resource not created yet).

Pulumi's wire sentinel and cty's unknown both decode to UNKNOWN, so the core checks and diffs around it once."""

from __future__ import annotations

from typing import Any


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False
