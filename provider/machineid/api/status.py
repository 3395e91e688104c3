"""Error <-> gRPC status at the wire boundary, in both directions.

Field violations travel in trailing metadata (`machineid-violations`, JSON) so the client re-raises the same
ValidationError with the same field paths.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from machineid.model import errors as e

VIOLATIONS_KEY = "machineid-violations"

_TO_CODE: list[tuple[type[e.MachineIDError], grpc.StatusCode]] = [
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
        payload = [{"path": e.render_path(v.path), "reason": v.reason} for v in err.violations]
        context.set_trailing_metadata(((VIOLATIONS_KEY, json.dumps(payload)),))
    context.abort(code_for(err), str(err))


def from_rpc_error(err: grpc.RpcError, address: str = "") -> e.MachineIDError:
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailers: Any = err.trailing_metadata() or ()
        for key, value in trailers:
            if key == VIOLATIONS_KEY:
                items = json.loads(value)
                return e.ValidationError([e.FieldViolation((i["path"],) if i["path"] else (), i["reason"])
                                          for i in items])
        return e.ValidationError(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        where = f" at {address}" if address else ""
        return e.TransportError(f"cannot reach the cluster{where}: {details}")
    cls = _FROM_CODE.get(code)
    if cls is None:
        return e.MachineIDError(f"{code.name}: {details}")
    return cls(details)
