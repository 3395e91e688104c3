"""`ctl get` and `ctl rm`, and the listing and delete the other families' `ls` and `rm` are; the parser stanzas of
get, create, edit and rm (the writes themselves are in apply)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime

import yaml

from machineid.cli import fmt
from machineid.cli.ctl import apply
from machineid.cli.ctl.common import LISTINGS, OUTPUTS, emit, format_flag, kind_ref
from machineid.cli.ctl.connection import connect
from machineid.model import node_state
from machineid.model.documents import to_document
from machineid.model.errors import NotFoundError, PermissionDeniedError, ValidationError
from machineid.model.resources import Node, ProvisionToken, Resource


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    get = csub.add_parser("get", help="show resources: get roles, get role/NAME",
                          epilog="examples:\n  machineid ctl get roles\n  machineid ctl get role/access --format json")
    get.add_argument("ref", metavar="KIND[/NAME]", help="roles, tokens, bots, users or nodes, or one of them by name")
    format_flag(get, ["yaml", "json", "text"], "yaml")
    get.set_defaults(func=cmd_get)

    create = csub.add_parser("create", help="create or update resources from YAML (kinds role, token, bot, ...)",
                             epilog="examples:\n  machineid ctl create -f cluster.yaml\n"
                                    "  machineid ctl create -f role.yaml --dry-run")
    create.add_argument("-f", "--file", required=True, help="YAML file, - for stdin; several documents allowed")
    create.add_argument("--force", action="store_true", help="overwrite existing resources")
    create.add_argument("--dry-run", action="store_true",
                        help="check every document, and say what would be created or updated, without writing")
    format_flag(create, OUTPUTS)
    create.set_defaults(func=apply.cmd_create)

    edit = csub.add_parser("edit", help="edit a resource in $EDITOR and apply it safely",
                           epilog="examples:\n  machineid ctl edit role/access\n"
                                  "  machineid ctl edit user/alice --format json",
                           description="Opens the resource's YAML in $VISUAL or $EDITOR (vi); on save, applies it "
                                       "with its revision, so a change someone made meanwhile is not overwritten.")
    edit.add_argument("ref", metavar="KIND/NAME")
    format_flag(edit, OUTPUTS)
    edit.set_defaults(func=apply.cmd_edit)

    rm = csub.add_parser("rm", help="delete a resource: rm KIND/NAME",
                         epilog="examples:\n  machineid ctl rm role/old-role\n"
                                "  machineid ctl rm node/web1 --format json")
    rm.add_argument("ref", metavar="KIND/NAME")
    format_flag(rm, OUTPUTS)
    rm.set_defaults(func=cmd_rm)


def listing(p: argparse.ArgumentParser, kind: str) -> None:
    """`ls` of a family: the listing of its kind."""
    format_flag(p, LISTINGS)
    p.set_defaults(func=lambda a: list_kind(a, kind))


def deleting(p: argparse.ArgumentParser, kind: str) -> None:
    """`rm NAME` of a family: the delete of its kind."""
    p.add_argument("name")
    format_flag(p, OUTPUTS)
    p.set_defaults(func=lambda a: delete_kind(a, kind, a.name))


def cmd_get(args: argparse.Namespace) -> int:
    kind, name = kind_ref(args.ref)
    return list_kind(args, kind, name)


def list_kind(args: argparse.Namespace, kind: str, name: str = "") -> int:
    tokens: list[ProvisionToken] | None = None
    with connect(args) as client:
        objs = [client.get(kind, name)] if name else client.list(kind)
        if kind == "bot" and args.format == "text":
            with contextlib.suppress(PermissionDeniedError):  # an auditor may not read tokens
                tokens = [t for t in client.list("token") if isinstance(t, ProvisionToken)]
    if args.format == "text":
        sys.stdout.write(fmt.table(kind, objs, tokens))
    else:
        sys.stdout.write(_dump(objs, args.format, one=bool(name)))
    return 0


def _dump(objs: list[Resource], form: str, one: bool) -> str:
    """JSON: a list for a listing (also of one or none), an object for one named resource, and every field, zero
    values too, so a script never meets a missing key. YAML: the compact documents `create -f` takes back."""
    if form == "json":
        docs = [to_document(o, every_field=True) for o in objs]
        now = datetime.now(UTC)
        for obj, doc in zip(objs, docs, strict=True):
            if isinstance(obj, Node):  # worked out here, as the text table shows it (status is ignored on input)
                doc["status"]["state"] = node_state.state(obj, now)
        return json.dumps(docs[0] if one else docs, indent=2) + "\n"
    return yaml.safe_dump_all([to_document(o) for o in objs], sort_keys=False)


def cmd_rm(args: argparse.Namespace) -> int:
    kind, name = kind_ref(args.ref)
    if not name:
        raise ValidationError(f'rm: name the resource as KIND/NAME, e.g. "{kind}/example"')
    return delete_kind(args, kind, name)


def delete_kind(args: argparse.Namespace, kind: str, name: str) -> int:
    """The delete is conditional on the revision read just before, so the revision printed is the one deleted
    (a change in between is a conflict, exit 7). A caller who may delete but not read it gets revision null."""
    with connect(args) as client:
        try:
            revision: str | None = client.get(kind, name).metadata.revision
        except (PermissionDeniedError, NotFoundError):
            revision = None  # the delete says whether it exists and may be deleted
        client.delete(kind, name, revision or "")
    shown = name if kind != "token" else "(secret)"
    at = f" (revision {revision})" if revision else ""
    emit(args, f'{kind} "{shown}" has been deleted{at}',
         {"kind": kind, "name": shown, "action": "deleted", "revision": revision})
    return 0
