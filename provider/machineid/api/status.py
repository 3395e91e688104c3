"""Error <-> gRPC status at the wire boundary, in both directions.

Field violations travel in trailing metadata (`machineid-violations`, JSON) so the client re-raises the same
ValidationError with the same field paths: each path as `steps`, a list (field names, map keys and list indexes,
as the model has them), never text to parse back. `path` carries the rendered text (spec.allow.logins[0]) beside
it, which is all older clients read (a list there would break them); from an older server, which sends only that,
it is parsed into steps.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import grpc

from machineid.model import errors as e
from machineid.model.validators import shown

VIOLATIONS_KEY = "machineid-violations"
F = TypeVar("F", bound=Callable[..., Any])

_TO_CODE: list[tuple[type[e.MachineIDError], grpc.StatusCode]] = [
    (e.RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),  # before its base class, TransportError
    (e.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (e.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (e.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (e.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (e.TransportError, grpc.StatusCode.UNAVAILABLE),
]
_FROM_CODE = {code: cls for cls, code in _TO_CODE}


def code_for(err: e.MachineIDError) -> grpc.StatusCode:
    for cls, code in _TO_CODE:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def abort(context: grpc.ServicerContext, err: e.MachineIDError) -> None:
    if isinstance(err, e.ValidationError):
        payload = [{"steps": list(v.path), "path": e.render_path(v.path), "reason": v.reason}
                   for v in err.violations]
        context.set_trailing_metadata(((VIOLATIONS_KEY, json.dumps(payload)),))
    context.abort(code_for(err), str(err))


# A logged message is bounded and one line: one quoting a client's value must not let the client grow the log.
_MAX_LOGGED = 512


def handler(log: logging.Logger, on_bug: Callable[[str, Exception], str],
            quiet: frozenset[str] = frozenset(),
            guard: Callable[[Any], AbstractContextManager[object]] | None = None) -> Callable[[F], F]:
    """Decorator for servicer methods: our errors become their status (logged, with the message unless the call
    is in `quiet`, whose messages may carry a join token); anything else is a bug, logged with its traceback and
    answered INTERNAL with on_bug(method name, error). `guard(servicer)`, when given, is held around the call."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if guard is not None:
                    with guard(self):
                        return fn(self, request, context)
                return fn(self, request, context)
            except e.MachineIDError as err:
                # Quiet calls may carry a join token; a NOT_FOUND echoes a requested name, which may be a token typed
                # where another kind's name belongs, or megabytes: neither reaches the log.
                quiet_call = fn.__name__ in quiet or isinstance(err, e.NotFoundError)
                detail = "" if quiet_call else f": {shown(str(err), _MAX_LOGGED)}"
                log.info("rpc %s failed: %s%s", fn.__name__, code_for(err).name, detail)
                abort(context, err)
            except Exception as err:
                log.exception("rpc %s: internal error", fn.__name__)
                context.abort(grpc.StatusCode.INTERNAL, on_bug(fn.__name__, err))

        return wrapper  # type: ignore[return-value]

    return wrap


_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def _path(sent: Any) -> e.Path:
    """A violation's path as the server sent it: its steps, or (an older server) its rendered text."""
    if isinstance(sent, list):
        return tuple(s if isinstance(s, int) and not isinstance(s, bool) else str(s) for s in sent)
    if not isinstance(sent, str) or not sent:
        return ()
    return tuple(int(m.group(1)) if m.group(1) is not None else m.group(2) for m in _STEP.finditer(sent))


def from_rpc_error(err: grpc.RpcError, address: str = "") -> e.MachineIDError:
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailers: Any = err.trailing_metadata() or ()
        for key, value in trailers:
            if key == VIOLATIONS_KEY:
                return e.ValidationError([e.FieldViolation(_path(i.get("steps", i.get("path"))),
                                                           str(i.get("reason", ""))) for i in json.loads(value)])
        return e.ValidationError(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        where = f" at {address}" if address else ""
        if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details.lower():
            # The server's certificate is not from the CA the identity trusts: another cluster (or a re-created
            # one), which TLS reports as a self-signed or unknown issuer.
            return e.UnauthenticatedError(f"the cluster{where} is not the one this identity belongs to (its "
                                          "certificate is not signed by the identity's CA): use an identity issued "
                                          "by this cluster, or check the address")
        return e.TransportError(f"cannot reach the cluster{where}: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # gRPC's own size limit on a message, not the server turning this caller away: retrying will not help.
        return e.MachineIDError(f"a message exceeded gRPC's size limit: {details}")
    cls = _FROM_CODE.get(code)
    if cls is None:
        return e.MachineIDError(f"{code.name}: {details}")
    return cls(details)
