"""What every resource handler does unless its kind says otherwise, and the state a call returns.

The generic check/diff/plan logic lives in iac/core.py; a handler holds only what differs between kinds (IDs,
server-chosen names, token expiry, bot onboarding and rendering, import rules), and sees the provider only through
a narrow Context."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from machineid.iac.context import Context
from machineid.iac.resource import Decoded, ResourceDef, decode_inputs, encode_inputs
from machineid.iac.unknown import contains_unknown
from machineid.model import codec
from machineid.model.errors import AlreadyExistsError, FieldViolation, NotFoundError, ValidationError
from machineid.model.resources import name_is_secret


@dataclasses.dataclass
class State:
    """What a resource is after a call: its ID, every property the call knows (inputs and outputs), and the
    inputs as the cluster has them (None where the adapter keeps the program's)."""

    id: str
    outputs: dict[str, Any]
    inputs: dict[str, Any] | None = None


class Handler:
    rdef: ResourceDef
    # Whether replacements() can force a replacement when no input changed (a token's expiry).
    forces_replacements = False
    # Whether a plan may leave the name unknown until the object exists: a bot naming this role in the same program
    # then skips the existence check at preview instead of failing on a role the apply is about to create. (An
    # adapter whose plan must keep a configured value, like Terraform's, does not.)
    name_unknown_until_created = False
    # Secret properties that are plain where the join method's token name is public (iam, bound_keypair: the proof
    # is an AWS identity or a key pair, not the name). An adapter that marks secrets per value leaves their secret
    # flag out of its schema and asks plain_secrets().
    plain_when_name_public: frozenset[str] = frozenset()

    def decode(self, inputs: dict[str, Any]) -> Decoded:
        return decode_inputs(self.rdef, inputs)

    def plain_secrets(self, values: dict[str, Any]) -> frozenset[str]:
        """Secret properties that these values (inputs or outputs) make plain, so a program declaring an iam or
        bound_keypair join keeps no secret in its state. A join method not known yet keeps them secret."""
        if name_is_secret(values.get("join_method")):
            return frozenset()
        return self.plain_when_name_public

    def secrets_known(self, values: dict[str, Any]) -> bool:
        """Whether these values decide plain_secrets() (the join method is known)."""
        return not contains_unknown(values.get("join_method"))

    def plain_inputs(self, ctx: Context, inputs: dict[str, Any]) -> frozenset[str]:
        """Secret inputs that the cluster says are plain (asked when inputs are checked, not on every call)."""
        return frozenset()

    def server_chosen_name(self, inputs: dict[str, Any]) -> bool:
        """Whether the cluster picks the name when the program leaves it out (otherwise it is required)."""
        return False

    def resource_id(self, obj: Any) -> str:
        return str(obj.metadata.name)

    def name_of(self, id: str, outputs: dict[str, Any]) -> str:
        return id

    def check_references(self, ctx: Context, decoded: Decoded, unknown: set[str]) -> list[FieldViolation]:
        return []

    def replacements(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any]) -> list[str]:
        """Properties that force a replacement for reasons other than a changed input (an expired token)."""
        return []

    def replace_warnings(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                         news: dict[str, Any], delete_first: bool) -> list[FieldViolation]:
        """What the plan of a replacement should warn about (nothing is refused)."""
        return []

    def replaces_on_any_change(self, old_outputs: dict[str, Any]) -> bool:
        """Whether any change to this object's inputs must replace it."""
        return False

    def state(self, ctx: Context, obj: Any, extra: Any, old_outputs: dict[str, Any]) -> State:
        inputs = encode_inputs(self.rdef, obj, extra)
        return State(self.resource_id(obj), dict(inputs), inputs)

    def create(self, ctx: Context, decoded: Decoded) -> State:
        try:
            created = ctx.client().upsert(decoded.obj, create_only=True)
        except AlreadyExistsError:
            raise AlreadyExistsError(self.exists_message(ctx, decoded.obj.metadata.name)) from None
        return self.state(ctx, created, decoded.extra, {})

    def exists_message(self, ctx: Context, name: str) -> str:
        return (f'{self.rdef.kind} "{name}" already exists on the cluster; adopt it with '
                f"{ctx.import_hint(self.rdef, name)} or choose another name")

    def read(self, ctx: Context, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        obj = ctx.client().get(self.rdef.kind, self.name_of(id, old_outputs))
        return self.state(ctx, obj, old_extra(self.rdef, old_inputs or old_outputs), old_outputs)

    def update(self, ctx: Context, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        return self.state(ctx, ctx.client().upsert(decoded.obj), decoded.extra, old_outputs)

    def plan_update(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        """The outputs an update will have, as far as they are known before it runs."""
        return {**old_outputs, **news}

    def delete(self, ctx: Context, id: str, outputs: dict[str, Any]) -> None:
        with contextlib.suppress(NotFoundError):  # already gone: the goal of a delete
            ctx.client().delete(self.rdef.kind, self.name_of(id, outputs))


def old_extra(rdef: ResourceDef, values: dict[str, Any]) -> Any:
    """Provider-only inputs live only in the state: take them from there (or the defaults, on import)."""
    if rdef.extra is None:
        return None
    names = {f.name for f in dataclasses.fields(rdef.extra)}
    data = {k: val for k, val in values.items() if k in names and val is not None}
    try:
        return codec.decode(rdef.extra, data)
    except ValidationError:
        return rdef.extra()
