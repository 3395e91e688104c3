"""`ctl tokens`: add (a single-use join token for a bot), ls, rm."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from machineid.cli.ctl import enrollment, resources
from machineid.cli.ctl.common import OUTPUTS, emit, format_flag, parse_ttl
from machineid.cli.ctl.connection import connect
from machineid.cli.parser import subcommands
from machineid.model import validators as v
from machineid.model.resources import DEFAULT_TOKEN_TTL, Metadata, ProvisionToken


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tokens = subcommands(csub.add_parser("tokens", help="manage join tokens"), "tokens_cmd")
    tadd = tokens.add_parser("add", help="create a join token",
                             epilog="example:\n  machineid ctl tokens add --type=bot --bot-name=robot --ttl=30m")
    tadd.add_argument("--type", required=True, choices=["bot"], help="what the token joins")
    tadd.add_argument("--bot-name", required=True, help="the bot the token joins")
    tadd.add_argument("--ttl", default=DEFAULT_TOKEN_TTL, help="how long the token may be used")
    format_flag(tadd, OUTPUTS)
    tadd.set_defaults(func=cmd_tokens_add)
    tls = tokens.add_parser("ls", help="list join tokens",
                            epilog="examples:\n  machineid ctl tokens ls\n  machineid ctl tokens ls --format json")
    resources.listing(tls, "token")
    resources.deleting(tokens.add_parser("rm", help="delete a join token",
                                         epilog="example:\n  machineid ctl tokens rm robot-key"), "token")


def cmd_tokens_add(args: argparse.Namespace) -> int:
    ttl = parse_ttl(args.ttl, "--ttl") or v.parse_duration(DEFAULT_TOKEN_TTL)
    token = ProvisionToken(metadata=Metadata(expires=datetime.now(UTC) + ttl))
    token.spec.bot_name = args.bot_name
    with connect(args) as client:
        client.get_bot(args.bot_name)
        out = client.upsert(token, create_only=True)
        pins = list(client.ping().ca_pins)
        assert isinstance(out, ProvisionToken)
        data = enrollment.fields(client, args.bot_name, out.metadata.name, "token", out.metadata.expires, pins)
        emit(args, enrollment.message(client, data, created=False), data)
    return 0
