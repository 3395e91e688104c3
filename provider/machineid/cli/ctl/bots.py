"""`ctl bots`: add (a bot, its user and role, and a join token), ls, rm, unlock, instances."""

from __future__ import annotations

import argparse

from machineid.cli.ctl import enrollment, instances, resources
from machineid.cli.ctl.common import OUTPUTS, csv, emit, format_flag, parse_ttl
from machineid.cli.ctl.connection import connect
from machineid.cli.parser import subcommands
from machineid.model.resources import DEFAULT_TOKEN_TTL, Bot, BotSpec, Metadata


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bots = subcommands(csub.add_parser("bots", help="manage bots"), "bots_cmd")
    add = bots.add_parser("add", help="create a bot, its user and role, and a join token",
                          epilog="example:\n  machineid ctl bots add robot --roles=access --logins=root")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help="comma-separated roles the bot's certificates carry")
    add.add_argument("--logins", default="", help="comma-separated logins (the bot's `logins` trait)")
    add.add_argument("--token", default="", help="use this existing token (e.g. an iam token)")
    add.add_argument("--ttl", default="", help=f"lifetime of the new join token (default {DEFAULT_TOKEN_TTL})")
    format_flag(add, OUTPUTS)
    add.set_defaults(func=cmd_bots_add)
    bls = bots.add_parser("ls", help="list bots",
                          epilog="examples:\n  machineid ctl bots ls\n  machineid ctl bots ls --format json")
    resources.listing(bls, "bot")
    resources.deleting(bots.add_parser("rm", help="delete a bot with its user, role and tokens",
                                       epilog="example:\n  machineid ctl bots rm robot"), "bot")
    unlock = bots.add_parser("unlock", help="unlock a bot locked by a generation mismatch",
                             epilog="examples:\n  machineid ctl bots unlock robot\n"
                                    "  machineid ctl tokens add --type=bot --bot-name=robot   # then join again")
    unlock.add_argument("name")
    format_flag(unlock, OUTPUTS)
    unlock.set_defaults(func=cmd_bots_unlock)
    instances.add_parsers(bots)


def cmd_bots_add(args: argparse.Namespace) -> int:
    bot = Bot(metadata=Metadata(name=args.name),
              spec=BotSpec(roles=csv(args.roles), traits={"logins": csv(args.logins)} if args.logins else {}))
    ttl = parse_ttl(args.ttl, "--ttl")
    with connect(args) as client:
        out = client.create_bot(bot, token_name=args.token, token_ttl=ttl)
        data = enrollment.fields(client, args.name, out.token, out.join_method, out.token_expires, out.ca_pins)
        emit(args, enrollment.message(client, data), data)
    return 0


def cmd_bots_unlock(args: argparse.Namespace) -> int:
    with connect(args) as client:
        out = client.unlock_bot(args.name)
    emit(args, f'bot "{args.name}" has been unlocked (revision {out.metadata.revision}). Its existing '
               "certificates can no longer renew (whoever copied them is shut out too): give its agent a new join "
               "token, from\n\n"
               f"  machineid ctl tokens add --type=bot --bot-name={args.name}",
         {"kind": "bot", "name": args.name, "action": "unlocked", "revision": out.metadata.revision,
           "next": f"machineid ctl tokens add --type=bot --bot-name={args.name}"})
    return 0
