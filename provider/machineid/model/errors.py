"""Errors shared by every layer.

MachineIDError
├── ValidationError       bad input; carries FieldViolations (gRPC INVALID_ARGUMENT)
├── NotFoundError         (NOT_FOUND)
├── AlreadyExistsError    (ALREADY_EXISTS)
├── PreconditionError     stale revision, locked bot, used token (FAILED_PRECONDITION)
├── PermissionDeniedError (PERMISSION_DENIED)
├── UnauthenticatedError  (UNAUTHENTICATED)
└── TransportError        the cluster could not be reached (UNAVAILABLE and friends)
    └── RateLimitedError  the cluster is refusing this caller's calls for now (RESOURCE_EXHAUSTED); retry later

Each maps to one gRPC status at the wire boundary (machineid.api.status) and back in the client, so a caller
catches the same type whether it talks to the store directly or over gRPC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


def render_path(path: Sequence[str | int]) -> str:
    """Render ("spec", "allow", "logins", 0) as spec.allow.logins[0]."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + step
    return out


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field: where, and what is wrong (and how to fix it)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        where = render_path(self.path)
        return f"{where}: {self.reason}" if where else self.reason


class MachineIDError(Exception):
    """Base of every error this package raises on purpose."""


class ValidationError(MachineIDError):
    def __init__(self, violations: Iterable[FieldViolation] | str, prefix: Path = ()) -> None:
        if isinstance(violations, str):
            violations = [FieldViolation((), violations)]
        self.violations = [FieldViolation(prefix + v.path, v.reason) for v in violations]
        super().__init__("; ".join(str(v) for v in self.violations))


class NotFoundError(MachineIDError):
    pass


class AlreadyExistsError(MachineIDError):
    pass


class PreconditionError(MachineIDError):
    pass


class PermissionDeniedError(MachineIDError):
    pass


class UnauthenticatedError(MachineIDError):
    pass


class TransportError(MachineIDError):
    pass


class RateLimitedError(TransportError):
    """A TransportError: whoever retries a connection failure retries this too, after a pause."""
