"""A plan's machineid changes in the core's terms, whichever tool planned them: terraform/plan_json.py reads
`tofu show -json PLANFILE` (or terraform's), pulumi/preview_json.py reads `pulumi preview --json`, and
`machineid review` judges the result. Each change is decoded by the providers' own decoder, so a plan is read as
the provider will apply it.

A value known only at apply is the core's UNKNOWN wherever the plan has it (a whole property, a list item, a map
entry). The object is decoded from the rest (a rule that the unknown part may satisfy is not held against it) and
the unknown paths are kept: the review reports them and the policy refuses what it cannot see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from machineid.iac.resource import BOT, ROLE, ResourceDef, decode_inputs
from machineid.iac.unknown import UNKNOWN
from machineid.model.errors import Path, ValidationError, render_path

ACTIONS = ("create", "update", "replace", "delete", "same")

# A property whose values name objects of another kind (a bot's roles): an item known only at apply that the plan
# shows coming from such objects planned alongside (a role created in the same plan) is their name.
NAME_REFERENCES: dict[str, tuple[str, ResourceDef]] = {BOT.name: ("roles", ROLE)}


@dataclass
class Change:
    rdef: ResourceDef
    address: str  # how the plan names it: machineid_role.r, or Pulumi's machineid:index:Role::deployer
    action: str  # one of ACTIONS
    before: Any = None  # model object (Role, Bot, ProvisionToken)
    after: Any = None
    unknown: list[Path] = field(default_factory=list)  # input paths known only at apply
    values: dict[str, Any] = field(default_factory=dict)  # the planned inputs known now (provider-only: a ttl)
    # property -> the plan addresses its unknown value comes from, when it comes from the plan's own machineid
    # resources only (Terraform's references, Pulumi's property dependencies).
    sources: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The object's name, or its plan address while the name is known only at apply."""
        name = self.after.metadata.name if self.after is not None else ""
        return str(name) or self.address

    def unknown_at(self, prefix: Path) -> list[Path]:
        """The unknown paths at or under prefix, or above it (a whole block the plan does not show)."""
        return [u for u in self.unknown if u[:len(prefix)] == prefix or prefix[:len(u)] == u]

    def unknown_text(self) -> list[str]:
        return [render_path(u) for u in self.unknown]


@dataclass
class Plan:
    tool: str  # terraform, pulumi
    changes: list[Change]


_GONE = object()


def _known(value: Any, path: Path, unknown: list[Path]) -> Any:
    """The value without its unknown parts (their paths go to unknown)."""
    if value is UNKNOWN:
        unknown.append(path)
        return _GONE
    if isinstance(value, dict):
        out = {k: _known(v, (*path, k), unknown) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _GONE}
    if isinstance(value, list):
        items = [_known(v, (*path, i), unknown) for i, v in enumerate(value)]
        return [v for v in items if v is not _GONE]
    return value


def _related(a: Path, b: Path) -> bool:
    return bool(a) and bool(b) and (a[:len(b)] == b or b[:len(a)] == a)


def decode_planned(rdef: ResourceDef, values: dict[str, Any] | None,
                   address: str) -> tuple[Any, dict[str, Any], list[Path]]:
    """A planned value (input properties, UNKNOWN where not known yet; None: no object) -> the model object, the
    inputs known now and the unknown paths. A server default left unset (a token's generated name) is the
    cluster's to choose, not unknown; a rule broken by the known parts alone is a field-named error."""
    if values is None:
        return None, {}, []
    unknown: list[Path] = []
    known: dict[str, Any] = {}
    for name in rdef.inputs():
        val = _known(values.get(name), (name,), unknown)
        if val is not _GONE:
            known[name] = val
    excused = [*unknown, *((n,) for n in rdef.server_defaults if known.get(n) is None)]
    try:
        return decode_inputs(rdef, known).obj, known, unknown
    except ValidationError as e:
        real = [x for x in e.violations if not any(_related(x.path, u) for u in excused)]
        if real:
            raise ValidationError(f"plan: {address}: {ValidationError(real)}") from None
    try:
        return decode_inputs(rdef, known, validate=False).obj, known, unknown
    except ValidationError as e:  # a type error the validating decode excused as part of an unknown value
        raise ValidationError(f"plan: {address}: {e}") from None


def resolve_names(changes: list[Change]) -> None:
    """Items known only at apply that name objects planned alongside (a bot's roles, from roles created in the same
    plan) become those objects' names (or addresses, while the names are unknown too). Only when every unknown
    item of the property is a list item, comes from such objects only, and there are no more items than objects;
    otherwise they stay unknown (a value built from a name, or from anything else, is not the name)."""
    by_address = {c.address: c for c in changes}
    for ch in changes:
        ref = NAME_REFERENCES.get(ch.rdef.name)
        if ref is None or ch.after is None:
            continue
        prop, target = ref
        pending = ch.unknown_at((prop,))
        sources = list(dict.fromkeys(ch.sources.get(prop) or []))
        if not pending or not sources or any(len(u) != 2 for u in pending) or len(pending) > len(sources):
            continue
        named = [by_address.get(a) for a in sources]
        if any(t is None or t.rdef != target or t.after is None for t in named):
            continue
        p = ch.rdef.inputs()[prop]
        holder = getattr(ch.after, p.section)
        names = list(dict.fromkeys([*getattr(holder, p.field), *(t.key for t in named if t is not None)]))
        setattr(holder, p.field, names)
        ch.values[prop] = names
        ch.unknown = [u for u in ch.unknown if u not in pending]
