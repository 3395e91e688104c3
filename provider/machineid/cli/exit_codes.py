"""Exit codes: one per kind of failure, so scripts and CI can tell them apart (documented in README.md)."""

from __future__ import annotations

from machineid.model import errors

OK = 0
FAILED = 1  # anything else: the agent could not do its job, an unexpected error
USAGE = 2  # a mistyped command or flag (argparse's own code)
INVALID = 3  # bad input: a field, a flag's value, a file
NOT_FOUND = 4
DENIED = 5  # permission denied, or not authenticated (no, expired or foreign identity)
UNREACHABLE = 6  # the cluster cannot be reached
CONFLICT = 7  # already exists, changed by someone else, still in use
POLICY = 8  # `machineid review --policy`: the plan violates a rule
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away

_BY_ERROR: list[tuple[type[errors.MachineIDError], int]] = [
    (errors.ValidationError, INVALID),
    (errors.NotFoundError, NOT_FOUND),
    (errors.PermissionDeniedError, DENIED),
    (errors.UnauthenticatedError, DENIED),
    (errors.TransportError, UNREACHABLE),
    (errors.RateLimitedError, UNREACHABLE),  # the cluster is busy with this address: try again later
    (errors.AlreadyExistsError, CONFLICT),
    (errors.PreconditionError, CONFLICT),
]


def for_error(err: errors.MachineIDError) -> int:
    for cls, code in _BY_ERROR:
        if type(err) is cls:  # exact: a subclass (the agent's AgentError) is its own kind of failure
            return code
    return FAILED
