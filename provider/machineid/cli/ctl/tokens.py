"""`ctl tokens`: add (a join token for a bot or a node), ls, rm."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from machineid.agent.config import resolve_token
from machineid.cli.ctl import enrollment, resources
from machineid.cli.ctl.common import OUTPUTS, emit, format_flag, parse_ttl
from machineid.cli.ctl.connection import connect
from machineid.cli.parser import subcommands
from machineid.model import validators as v
from machineid.model.errors import ValidationError
from machineid.model.resources import (
    DEFAULT_TOKEN_TTL,
    NODE_JOIN_METHODS,
    BoundKeypair,
    BoundKeypairOnboarding,
    Metadata,
    ProvisionToken,
    ProvisionTokenSpec,
    TokenRule,
)

EXAMPLES = """\
example:
  machineid ctl tokens add --type=bot --bot-name=robot --ttl=30m

node examples (the node is registered first):
  machineid ctl tokens add --type=node --node-name=web1
  machineid ctl tokens add --type=node --node-name=web1 --join-method=iam --name=web1-iam \\
      --aws-account=123456789012 --aws-arn='arn:aws:sts::123456789012:assumed-role/web/*'
  machineid ctl tokens add --type=node --node-name=web1 --join-method=bound_keypair --name=web1-key \\
      --initial-public-key=./web1-key.pub
"""


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tokens = subcommands(csub.add_parser("tokens", help="manage join tokens"), "tokens_cmd")
    tadd = tokens.add_parser("add", help="create a join token for a bot or a node", epilog=EXAMPLES)
    tadd.add_argument("--type", required=True, choices=["bot", "node"], help="what the token joins")
    tadd.add_argument("--bot-name", default="", help="--type=bot: the bot the token joins")
    tadd.add_argument("--node-name", default="", help="--type=node: the node the token joins (registered with "
                                                      "`ctl nodes add` or a Node resource)")
    # The token's method; this command's own --join-method (the in-memory join stays available before the command:
    # `ctl --join-method github tokens add ...`).
    tadd.add_argument("--join-method", dest="token_method", default="token", choices=list(NODE_JOIN_METHODS),
                      help="token: a single-use secret the cluster picks; iam: the joiner's AWS identity "
                           "(--aws-account, --aws-arn); bound_keypair: the joiner's key pair "
                           "(--initial-public-key or --registration-secret)")
    tadd.add_argument("--name", default="", help="iam, bound_keypair: the token's name (not a secret)")
    tadd.add_argument("--aws-account", default="", help="iam: the AWS account allowed to join")
    tadd.add_argument("--aws-arn", default="", help="iam: the caller ARN allowed to join ('*' and '?' globs)")
    tadd.add_argument("--initial-public-key", default="", metavar="KEY_OR_FILE",
                      help="bound_keypair: the joiner's public key (OpenSSH line, as `machineid bot keypair create` "
                           "prints it), or a file holding it")
    tadd.add_argument("--registration-secret", default="", metavar="SECRET_OR_FILE",
                      help="bound_keypair: instead of --initial-public-key, a one-time secret (32+ characters) the "
                           "joiner registers its own key with, or a file holding it")
    tadd.add_argument("--ttl", default="",
                      help=f"how long the token may be used (default: {DEFAULT_TOKEN_TTL}); iam and bound_keypair "
                           "tokens last until deleted unless it is given")
    format_flag(tadd, OUTPUTS)
    tadd.set_defaults(func=cmd_tokens_add)
    tls = tokens.add_parser("ls", help="list join tokens",
                            epilog="examples:\n  machineid ctl tokens ls\n  machineid ctl tokens ls --format json")
    resources.listing(tls, "token")
    resources.deleting(tokens.add_parser("rm", help="delete a join token",
                                         epilog="example:\n  machineid ctl tokens rm robot-key"), "token")


def _token(args: argparse.Namespace) -> ProvisionToken:
    """The token the flags describe, checked by the model before anything is sent (each flag named)."""
    flag = {"bot": "--bot-name", "node": "--node-name"}[args.type]
    other = {"bot": "--node-name", "node": "--bot-name"}[args.type]
    if not getattr(args, flag[2:].replace("-", "_")):
        raise ValidationError(f"{flag}: --type={args.type} names the {args.type} the token joins")
    if getattr(args, other[2:].replace("-", "_")):
        raise ValidationError(f"{other}: not with --type={args.type}")
    method = args.token_method
    if method == "token" and args.name:
        raise ValidationError("--name: a token-method token's name is its secret: the cluster picks it")
    if method != "token" and not args.name:
        raise ValidationError(f"--name: {method} tokens are named (the name is not a secret), e.g. "
                              f"{args.bot_name or args.node_name}-{'key' if method == 'bound_keypair' else method}")
    ttl = parse_ttl(args.ttl, "--ttl") or (v.parse_duration(DEFAULT_TOKEN_TTL) if method == "token" else None)
    spec = ProvisionTokenSpec(roles=["Bot" if args.type == "bot" else "Node"], join_method=method,
                              bot_name=args.bot_name, node_name=args.node_name)
    if args.aws_account or args.aws_arn:
        spec.allow = [TokenRule(aws_account=args.aws_account, aws_arn=args.aws_arn)]
    if args.initial_public_key or args.registration_secret:
        spec.bound_keypair = BoundKeypair(onboarding=BoundKeypairOnboarding(
            initial_public_key=_public_key(args.initial_public_key),
            registration_secret=resolve_token(args.registration_secret, "--registration-secret")))
    return ProvisionToken(metadata=Metadata(name=args.name, expires=datetime.now(UTC) + ttl if ttl else None),
                          spec=spec)


def _public_key(value: str) -> str:
    """The key line itself (its base64 may hold a '/'), or the file `bot keypair create` output went to."""
    if not value or value.startswith(("ssh-", "ecdsa-")):
        return value
    return resolve_token(value if "/" in value else f"./{value}", "--initial-public-key")


def cmd_tokens_add(args: argparse.Namespace) -> int:
    token = _token(args)
    with connect(args) as client:
        if args.type == "bot":
            client.get_bot(args.bot_name)
        else:
            client.get_node(args.node_name)  # registered first: a token for no node would join nothing
        out = client.upsert(token, create_only=True)
        pins = list(client.ping().ca_pins)
        assert isinstance(out, ProvisionToken)
        name = args.bot_name or args.node_name
        data = enrollment.fields(client, name, out.metadata.name, out.spec.join_method, out.metadata.expires, pins,
                                 kind=args.type)
        emit(args, enrollment.message(client, data, created=False), data)
    return 0
