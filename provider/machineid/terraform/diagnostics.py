"""Diagnostics as values: a problem, its severity, and where in the configuration it is (a structured path that
only the gRPC layer turns into an AttributePath, walking the schema to tell attributes from list and map keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from machineid.model import codec
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    MachineIDError,
    NotFoundError,
    Path,
    PermissionDeniedError,
    PreconditionError,
    TransportError,
    UnauthenticatedError,
    ValidationError,
)
from machineid.terraform.schema import Block, NestedBlock

Step = tuple[str, str | int]  # ("attribute", name) | ("key", map key) | ("index", list index)


@dataclass(frozen=True)
class Diagnostic:
    summary: str
    detail: str = ""
    steps: tuple[Step, ...] = ()
    warning: bool = False


def steps_for(block: Block | None, path: Path) -> tuple[Step, ...]:
    """A core property path as attribute-path steps, by the schema's types. A path the schema does not know is cut
    where it stops matching, so the diagnostic points at the nearest attribute that exists, or at the resource."""
    out: list[Step] = []
    current: Block | None = block
    tp: Any = None
    blocks: NestedBlock | None = None  # inside a list of blocks: an index comes next
    for step in path:
        if current is not None:
            nested = current.nested(step) if isinstance(step, str) else None
            attr = current.attribute(step) if isinstance(step, str) else None
            if nested is None and attr is None:
                break  # no such attribute: the nearest one that exists
            out.append(("attribute", str(step)))
            current, tp, blocks = None, attr.tp if attr else None, None
            if nested is not None and nested.is_object:
                current = nested.block
            elif nested is not None:
                blocks = nested
            continue
        if blocks is not None:
            if not isinstance(step, int):
                break
            out.append(("index", step))
            current, blocks = blocks.block, None
            continue
        if tp is None:
            break
        sh = codec.shape(tp)
        if sh.kind == "list" and isinstance(step, int):
            out.append(("index", step))
            tp = sh.item
        elif sh.kind == "dict":
            out.append(("key", str(step)))
            tp = sh.item
        elif sh.kind == "object" and isinstance(step, str) and step in codec.type_hints(sh.tp):
            out.append(("attribute", step))
            tp = codec.type_hints(sh.tp)[step]
        else:
            break
    return tuple(out)


def from_violations(block: Block | None, violations: list[FieldViolation], summary: str, *,
                    warning: bool = False) -> list[Diagnostic]:
    return [Diagnostic(summary, str(v), steps_for(block, v.path), warning) for v in violations]


_SUMMARIES: tuple[tuple[type[MachineIDError], str], ...] = (
    (NotFoundError, "Not found on the machineid cluster"),
    (AlreadyExistsError, "Already exists on the machineid cluster"),
    (PreconditionError, "Refused by the machineid cluster"),
    (PermissionDeniedError, "Permission denied by the machineid cluster"),
    (UnauthenticatedError, "Not authenticated to the machineid cluster"),
    (TransportError, "Cannot reach the machineid cluster"),
)


def from_error(block: Block | None, err: MachineIDError, action: str) -> list[Diagnostic]:
    """An error the core raised, as diagnostics that say what failed and point at the attribute when they can."""
    if isinstance(err, ValidationError):
        return from_violations(block, err.violations, f"Invalid machineid configuration ({action})")
    summary = next((s for cls, s in _SUMMARIES if isinstance(err, cls)), "machineid error")
    return [Diagnostic(summary, f"{action}: {err}")]
