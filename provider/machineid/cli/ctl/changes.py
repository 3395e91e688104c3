"""What a write would change in a stored resource, field by field, for `ctl create -f --dry-run`: the paths with
old -> new, secrets (the model's secret fields) never shown, only said to change."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import render_path
from machineid.model.resources import DEFAULT_TOKEN_TTL, Bot, ProvisionToken, Resource, User

SECRET = "(secret)"
NEW_SECRET = "(a new secret)"
# Set by the cluster, never by the writer: a write does not change them.
_SERVER_SET = {("metadata", "revision"), ("metadata", "created"), ("metadata", "updated"), ("status",)}


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    def text(self) -> str:
        return f"{self.path}: {_shown(self.old)} -> {_shown(self.new)}"

    def data(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


def _shown(value: Any) -> str:
    return value if value in (SECRET, NEW_SECRET) else json.dumps(value, ensure_ascii=False)


def _masked(value: Any) -> Any:
    return SECRET if value not in (None, "") else value


def _walk(tp: Any, old: Any, new: Any, path: tuple[str, ...], out: list[Change]) -> None:
    """Objects field by field; a list or a map (labels, rules) is one value, compared whole."""
    for f, ftp, spec in codec.model_fields(codec.shape(tp).tp):
        here = (*path, f.name)
        if here in _SERVER_SET:
            continue
        a, b = (old or {}).get(f.name), (new or {}).get(f.name)
        if a == b:
            continue
        if spec is not None and spec.secret:
            out.append(Change(render_path(here), _masked(a), NEW_SECRET if b not in (None, "") else b))
        elif codec.shape(ftp).kind == "object":
            _walk(ftp, a, b, here, out)
        else:
            out.append(Change(render_path(here), a, b))


def as_written(current: Resource, obj: Resource, now: datetime) -> Resource:
    """`obj` as the cluster would store it over `current` (its upsert rules): a bot takes only its spec,
    description and labels; status stays the cluster's; a registration secret is stored hashed; a single-use
    token without an expiry gets the default one; a user is never a bot's."""
    if isinstance(obj, Bot) and isinstance(current, Bot):
        return replace(current, spec=obj.spec, metadata=replace(current.metadata, description=obj.metadata.description,
                                                                 labels=obj.metadata.labels))
    out = copy.deepcopy(obj)
    if isinstance(out, ProvisionToken) and isinstance(current, ProvisionToken):
        out.status = current.status
        onboarding = out.spec.bound_keypair.onboarding
        if onboarding.registration_secret and not v.is_secret_hash(onboarding.registration_secret):
            onboarding.registration_secret = v.secret_hash(onboarding.registration_secret)
        if out.spec.join_method == "token" and out.metadata.expires is None:
            out.metadata.expires = now + v.parse_duration(DEFAULT_TOKEN_TTL)
    if isinstance(out, User):
        out.spec.bot_name = ""
    return out


def diff(current: Resource, written: Resource) -> list[Change]:
    """The fields `written` would change in `current` (both of one kind), in declaration order."""
    out: list[Change] = []
    _walk(type(current), codec.encode(current), codec.encode(written), (), out)
    return out
