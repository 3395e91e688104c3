"""What the ctl command families share: the --format flag, the result of a command (text for people, JSON for
scripts), and the parsing of the arguments several of them take."""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path

from machineid.api.client import Client
from machineid.model import validators as v
from machineid.model.errors import NotFoundError, ValidationError
from machineid.model.resources import KIND_ALIASES, KINDS, ProvisionToken, Resource

OUTPUTS = ["text", "json"]
LISTINGS = ["text", "yaml", "json"]


def format_flag(p: argparse.ArgumentParser, choices: list[str], default: str = "text") -> None:
    p.add_argument("--format", default=default, choices=choices, help="output format")


def emit(args: argparse.Namespace, text: str, data: object) -> None:
    """A command's result: `text` for people, `data` as JSON for scripts."""
    if getattr(args, "format", "text") == "json":
        print(json.dumps(data, indent=2))
    elif text:
        print(text)


def kind_ref(ref: str) -> tuple[str, str]:
    """KIND[/NAME] -> (kind, name), the kind by any of its names (role, roles)."""
    kind, _, name = ref.partition("/")
    if kind.lower() not in KIND_ALIASES:
        raise ValidationError(f'"{kind}" is not a resource kind; use one of {", ".join(sorted(KINDS))}')
    return KIND_ALIASES[kind.lower()], name


def parse_ttl(value: str, flag: str) -> timedelta | None:
    if not value:
        return None
    reason = v.duration(min_seconds=1).check(value)
    if reason:
        raise ValidationError(f"{flag}: {reason}")
    return v.parse_duration(value)


def csv(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def shown_name(obj: Resource, generated: str = "") -> str:
    """A token of the token method is its secret: shown once when the cluster generated it, never repeated."""
    if isinstance(obj, ProvisionToken) and obj.spec.join_method == "token":
        return generated or "(secret)"
    return obj.metadata.name


def exists(client: Client, obj: Resource) -> Resource | None:
    if not obj.metadata.name:
        return None
    try:
        return client.get(obj.kind, obj.metadata.name)
    except NotFoundError:
        return None


def writable_file(path: Path, flag: str) -> None:
    """Checked before anything is issued or registered: a result with nowhere to go is lost (and a node would be
    registered without its key)."""
    if str(path).endswith("/") or path.is_dir():
        raise ValidationError(f"{flag}: {path} is a directory; name the file to write, e.g. {path / 'identity'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValidationError(f"{flag}: the directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValidationError(f"{flag}: cannot write into {parent}")
