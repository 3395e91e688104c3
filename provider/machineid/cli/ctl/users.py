"""`ctl users`: add, ls, rm."""

from __future__ import annotations

import argparse

from machineid.cli.ctl import resources
from machineid.cli.ctl.common import OUTPUTS, csv, emit, format_flag
from machineid.cli.ctl.connection import connect
from machineid.cli.parser import subcommands
from machineid.model import validators as v
from machineid.model.errors import AlreadyExistsError, ValidationError
from machineid.model.resources import Metadata, User


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    users = subcommands(csub.add_parser("users", help="manage users"), "users_cmd")
    uadd = users.add_parser("add", help="create a user",
                            epilog="example:\n  machineid ctl users add alice --roles=auditor --logins=alice")
    uadd.add_argument("name")
    uadd.add_argument("--roles", required=True, help="comma-separated roles")
    uadd.add_argument("--logins", default="", help="comma-separated logins (the user's `logins` trait)")
    format_flag(uadd, OUTPUTS)
    uadd.set_defaults(func=cmd_users_add)
    uls = users.add_parser("ls", help="list users",
                           epilog="examples:\n  machineid ctl users ls\n  machineid ctl users ls --format json")
    resources.listing(uls, "user")
    resources.deleting(users.add_parser("rm", help="delete a user", epilog="example:\n  machineid ctl users rm alice"),
                       "user")


def cmd_users_add(args: argparse.Namespace) -> int:
    user = User(metadata=Metadata(name=args.name))
    user.spec.roles = csv(args.roles)
    if args.logins:
        logins = csv(args.logins)
        for login in logins:
            reason = v.LOGIN.check(login)
            if reason:
                raise ValidationError(f"--logins: {reason}")
        user.spec.traits = {"logins": logins}
    with connect(args) as client:
        try:
            out = client.upsert(user, create_only=True)
        except AlreadyExistsError:
            raise AlreadyExistsError(f'user "{args.name}" already exists; change its roles or logins with `machineid '
                                     f"ctl edit user/{args.name}`, or remove it first with `machineid ctl users rm "
                                     f"{args.name}`") from None
    emit(args, f'user "{args.name}" has been created',
         {"kind": "user", "name": args.name, "action": "created", "revision": out.metadata.revision})
    return 0
