"""The provider core: check, diff, plan and the CRUD entry points, on plain snake_case values.

Rules that make a no-change plan trustworthy (where Teleport's Terraform provider is not):
- check normalizes every input to its full canonical form with the model's defaults, so a server default never
  looks like a change, and removing a field from the program is a change back to the default;
- diff compares inputs only, field by field (nested paths, so a role's logins change shows as allow.logins);
  a field the cluster cannot change in place replaces the resource;
- read returns the cluster's state as inputs, so refresh sees out-of-band changes; an object that is gone reads
  as gone; a join token whose expiry has passed plans a replacement instead of failing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from machineid.iac import functions
from machineid.iac.config import ProviderConfig
from machineid.iac.context import Context, Hints, Log
from machineid.iac.handlers import HANDLERS, Handler, State
from machineid.iac.resource import ResourceDef, encode_inputs, prop_path
from machineid.iac.settings import Rendered
from machineid.iac.unknown import UNKNOWN, contains_unknown
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, NotFoundError, Path, ValidationError
from machineid.model.instances import select

if TYPE_CHECKING:
    from machineid.api.client import Client

__all__ = ["Change", "CheckResult", "Core", "DiffResult", "Hints", "State"]


@dataclass
class CheckResult:
    inputs: dict[str, Any]
    violations: list[FieldViolation] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    kind: str  # "add", "update" or "delete"
    replace: bool


@dataclass
class DiffResult:
    changes: dict[Path, Change] = field(default_factory=dict)
    replaces: list[str] = field(default_factory=list)  # top-level properties that force a replacement
    delete_before_replace: bool = False
    warnings: list[FieldViolation] = field(default_factory=list)  # shown with the plan; nothing is refused

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class Core:
    def __init__(self, hints: Hints, log: Log | None = None,
                 client_factory: Callable[[ProviderConfig], Client] | None = None) -> None:
        self.hints = hints
        self.log: Log = log or (lambda severity, message: None)
        self.config = ProviderConfig.from_values({})
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # How long a delete waits for objects that still use its object and are being deleted by this process too:
        # the CLIs delete independent resources in parallel, so a role's bot may be going away at the same moment.
        self.in_use_wait = 60.0
        # How long it waits for other users of its object: a parallel delete of one may be about to start.
        self.holder_grace = 2.0
        # (kind, name) of the objects this process was asked to delete.
        self.deletes: set[tuple[str, str]] = set()
        # Set when the CLI asks the provider to stop (Ctrl-C: Terraform's StopProvider, Pulumi's Cancel): waits end.
        self.stopping = threading.Event()
        self._client_factory = client_factory
        self._client: Client | None = None
        # (kind, name) of objects planned for creation by this process: a bot planned after its role in the same
        # run does not fail the role's existence check.
        self.planned_creates: set[tuple[str, str]] = set()

    def context(self) -> Context:
        """What a handler's call may use: taken now, so a test that moves the clock or shortens a wait is seen."""
        return Context(self.client, self.clock, self.log, self.hints, self.config.address, self.planned_creates,
                       self.deletes, self.stopping, self.in_use_wait, self.holder_grace)

    # ---------------------------------------------------------------- configuration
    def check_config(self, values: Mapping[str, Any]) -> list[FieldViolation]:
        if any(contains_unknown(x) for x in values.values()):
            return []
        return ProviderConfig.from_values(values).problems(self.hints.how_to_set)

    def configure(self, values: Mapping[str, Any]) -> None:
        self.config = ProviderConfig.from_values(values)
        if self._client is not None:
            self._client.close()
            self._client = None

    def connect(self) -> Client:
        """The client for the configuration; a ValidationError names the configuration field at fault (an
        unreadable identity, a CA pin that does not match it)."""
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory(self.config)
            else:
                self._client = self.config.client(self.hints.how_to_set)
        return self._client

    def client(self) -> Client:
        try:
            return self.connect()
        except ValidationError as e:
            raise ValidationError(f"the machineid provider is not configured: {e}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @staticmethod
    def handler(rdef: ResourceDef) -> Handler:
        return HANDLERS[rdef.name]

    # ---------------------------------------------------------------- check
    def check(self, rdef: ResourceDef, news: dict[str, Any], *, references: bool = True) -> CheckResult:
        """Validate and complete inputs; values not known yet are kept, and the rest is still checked."""
        h = self.handler(rdef)
        unknown = {k for k, val in news.items() if contains_unknown(val)}
        props = rdef.inputs()
        # Unknown values (whole properties, or leaves inside a block) get stand-ins, so the rest is decoded and
        # completed with the model's defaults as it will be at apply (a block planned null here but completed at
        # apply is an inconsistent plan); the unknowns are put back where they were.
        stand_ins = {k: _stand_in(props[k].tp, news[k]) for k in unknown if k in props}
        known = {k: val for k, val in news.items() if k not in unknown}
        try:
            decoded = h.decode({**known, **stand_ins})
        except ValidationError as e:
            return CheckResult(news, [x for x in e.violations if not (x.path and x.path[0] in unknown)])
        inputs = encode_inputs(rdef, decoded.obj, decoded.extra)
        for name in rdef.server_defaults:
            if news.get(name) is None:
                inputs.pop(name, None)
        inputs.update({k: _restore(inputs.get(k), news[k]) for k in unknown})
        violations = h.check_references(self.context(), decoded, unknown) if references else []
        return CheckResult(inputs, violations)

    def plain_inputs(self, rdef: ResourceDef, inputs: dict[str, Any]) -> frozenset[str]:
        """Secret inputs that are plain for these values, as far as the cluster says (a bot's token_name naming a
        bound_keypair token)."""
        return self.handler(rdef).plain_inputs(self.context(), inputs)

    # ---------------------------------------------------------------- diff
    def diff(self, rdef: ResourceDef, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             news: dict[str, Any]) -> DiffResult:
        h = self.handler(rdef)
        input_props = rdef.inputs()
        olds = old_inputs if old_inputs else rdef.input_values(old_outputs)
        result = DiffResult()
        ctx = self.context()
        forced = h.replacements(ctx, old_outputs, olds)
        if olds == news and not forced:
            return result  # the common case in a plan with no changes
        replace_all = h.replaces_on_any_change(old_outputs)
        for name, p in input_props.items():
            old, new = olds.get(name), news.get(name)
            if name in rdef.server_defaults and new is None:
                continue  # left to the cluster: whatever it picked is what the program asked for
            for path in changed_paths((name,), p.tp, old, new):
                kind = "add" if old is None else "delete" if new is None else "update"
                replace = replace_all or p.spec.replace_on_change or nested_replaces(p.tp, path[1:])
                result.changes[path] = Change(kind, replace)
                if replace and name not in result.replaces:
                    result.replaces.append(name)
        for name in forced:
            result.changes[(name,)] = Change("update", True)
            if name not in result.replaces:
                result.replaces.append(name)
        if result.replaces:
            same_name = news.get("name") in (None, olds.get("name")) or news.get("name") is UNKNOWN
            result.delete_before_replace = bool(same_name)
            new_name = news.get("name")
            if isinstance(new_name, str) and new_name and not same_name:
                # A bot checked later in this plan may already name the replacement (a renamed role).
                self.planned_creates.add((rdef.kind, new_name))
            result.warnings.extend(h.replace_warnings(ctx, old_outputs, olds, news, result.delete_before_replace))
        return result

    # ---------------------------------------------------------------- plan
    def plan(self, rdef: ResourceDef, news: dict[str, Any], old: State | None = None, *, replace: bool = False,
             changed: bool = True) -> State:
        """What the object will be after this change, as far as it is known before it runs: the plan rules both
        adapters follow. news are the program's inputs (an unset server default is None or absent). A create or a
        replacement is a new object: its ID, its outputs and what the cluster chooses for unset inputs are unknown.
        An update keeps what the cluster chose and plans the handler's outputs; no change is the state as it is."""
        if old is None or replace:
            return State(UNKNOWN, self.plan_create(rdef, news))
        kept = self.keep_server_choices(rdef, news, old.outputs)
        if not changed:
            return State(old.id, {**old.outputs, **kept})
        return State(old.id, self.plan_update(rdef, old.outputs, old.inputs, kept))

    @staticmethod
    def keep_server_choices(rdef: ResourceDef, news: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """The inputs, with what the cluster chose for the object where they leave it unset (a generated token
        name, a default expiry): its choice stands until the object is replaced."""
        return {**news, **{n: old.get(n) for n in rdef.server_defaults if news.get(n) is None}}

    def plan_create(self, rdef: ResourceDef, inputs: dict[str, Any]) -> dict[str, Any]:
        """The properties a create will have, as far as they are known before it runs."""
        outputs = dict(inputs)
        for p in rdef.props():
            if p.section == "output":
                outputs[p.name] = UNKNOWN
        for name in rdef.server_defaults:
            if inputs.get(name) is None:
                outputs[name] = UNKNOWN
        given = inputs.get("name")
        if isinstance(given, str) and given:
            self.planned_creates.add((rdef.kind, given))
        return outputs

    def plan_update(self, rdef: ResourceDef, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
                    news: dict[str, Any]) -> dict[str, Any]:
        olds = old_inputs or old_outputs
        return self.handler(rdef).plan_update(self.context(), old_outputs, olds, news)

    # ---------------------------------------------------------------- CRUD
    def create(self, rdef: ResourceDef, inputs: dict[str, Any]) -> State:
        h = self.handler(rdef)
        with _property_paths():
            return h.create(self.context(), h.decode(inputs))

    def read(self, rdef: ResourceDef, id: str, old_outputs: dict[str, Any],
             old_inputs: dict[str, Any] | None) -> State | None:
        """The object as the cluster has it now; None when it is gone. With no prior state, an import."""
        importing = not old_outputs and not old_inputs
        try:
            state = self.handler(rdef).read(self.context(), id, old_outputs, old_inputs, importing)
        except NotFoundError:
            return None
        # Inputs the cluster chose (a generated token name, a default expiry) stay out unless the program set them.
        assert state.inputs is not None
        for name in rdef.server_defaults:
            if not importing and (old_inputs or {}).get(name) is None:
                state.inputs.pop(name, None)
        return state

    def update(self, rdef: ResourceDef, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
               news: dict[str, Any]) -> State:
        h = self.handler(rdef)
        with _property_paths():
            return h.update(self.context(), h.decode(news), old_outputs, old_inputs or old_outputs, news)

    def delete(self, rdef: ResourceDef, id: str, outputs: dict[str, Any]) -> None:
        h = self.handler(rdef)
        self.deletes.add((rdef.kind, h.name_of(id, outputs)))
        h.delete(self.context(), id, outputs)

    # ---------------------------------------------------------------- functions / data sources
    def cluster_info(self) -> functions.ClusterInfo:
        ping = self.client().ping()
        return functions.ClusterInfo(cluster_name=ping.cluster_name, version=ping.server_version,
                                     ca_pins=list(ping.ca_pins), address=self.config.address)

    def bot_instances(self, args: functions.BotInstancesArgs) -> functions.BotInstances:
        since = v.parse_duration(args.not_seen_since).total_seconds() if args.not_seen_since else 0.0
        found = select(self.client().list_bot_instances(args.bot_name), older_than=args.version_older_than,
                       not_seen_since=since, unhealthy=args.unhealthy_only)
        return functions.summarize(found)

    def render(self, args: functions.RenderArgs) -> Rendered:
        if not args.auth_server:
            args.auth_server = self.config.address
        if not args.ca_pins:
            args.ca_pins = list(self.client().ping().ca_pins)
        return functions.render(args)


@contextlib.contextmanager
def _property_paths() -> Iterator[None]:
    """The cluster's refusals name model paths (metadata.expires); the adapters point at properties (expires)."""
    try:
        yield
    except ValidationError as e:
        raise ValidationError([FieldViolation(prop_path(v.path), v.reason) for v in e.violations]) from None


def _stand_in(tp: Any, value: Any) -> Any:
    """The value with a placeholder where it is unknown (the whole of it, or leaves inside objects, lists and
    maps), its known parts kept."""
    if value is UNKNOWN:
        return _placeholder(tp)
    sh = codec.shape(tp)
    if sh.kind == "object" and isinstance(value, dict):
        types = {f.name: ftp for f, ftp, _ in codec.model_fields(sh.tp)}
        return {k: _stand_in(types[k], v) if k in types else v for k, v in value.items()}
    if sh.kind == "list" and isinstance(value, list):
        return [_stand_in(sh.item, x) for x in value]
    if sh.kind == "dict" and isinstance(value, dict):
        return {k: _stand_in(sh.item, v) for k, v in value.items()}
    return value


def _restore(completed: Any, given: Any) -> Any:
    """The completed value with the unknowns of the given one back in their places."""
    if given is UNKNOWN:
        return UNKNOWN
    if isinstance(given, dict) and isinstance(completed, dict):
        return {k: _restore(v, given[k]) if k in given else v for k, v in completed.items()}
    if isinstance(given, list) and isinstance(completed, list) and len(given) == len(completed):
        return [_restore(c, g) for c, g in zip(completed, given, strict=True)]
    return completed


def _placeholder(tp: Any) -> Any:
    """A valid value of the type, standing in for one not known yet (it never reaches the cluster)."""
    sh = codec.shape(tp)
    if sh.kind == "str":
        return "unknown"
    if sh.kind == "list":
        return ["unknown"] if sh.item is str else []
    return empty(tp)


_EMPTY_BY_KIND: dict[str, Any] = {"str": "", "int": 0, "bool": False}


def empty(tp: Any) -> Any:
    """The zero value of a type: what a missing value means (the Pulumi state leaves empty fields out)."""
    kind = codec.shape(tp).kind
    if kind == "list":
        return []
    if kind in ("dict", "object"):
        return {}
    return _EMPTY_BY_KIND.get(kind)


def nested_replaces(tp: Any, path: Path) -> bool:
    """Whether a change at this path inside an object replaces the resource: a field along it cannot change in
    place (a bound_keypair token's onboarding key), though its siblings can (rotate_after, recovery.limit)."""
    for step in path:
        sh = codec.shape(tp)
        if sh.kind != "object":
            return False
        found = next(((ftp, spec) for f, ftp, spec in codec.model_fields(sh.tp) if f.name == step), None)
        if found is None:
            return False
        tp, spec = found
        if spec is not None and spec.replace_on_change:
            return True
    return False


def changed_paths(prefix: Path, tp: Any, old: Any, new: Any) -> list[Path]:
    """Paths that differ; objects of model types recurse, so the diff names the exact nested field. A missing
    value and the empty value of its type are the same."""
    if new is UNKNOWN:
        return [prefix]
    old = empty(tp) if old is None else old
    new = empty(tp) if new is None else new
    sh = codec.shape(tp)
    if sh.kind == "object" and isinstance(old, dict) and isinstance(new, dict):
        out: list[Path] = []
        for f, ftp, _ in codec.model_fields(sh.tp):
            out += changed_paths((*prefix, f.name), ftp, old.get(f.name), new.get(f.name))
        return out
    if contains_unknown(new):
        return [prefix]
    return [] if old == new else [prefix]
