"""`machineid ctl`: the admin CLI (the `tctl` analogue). Talks to the cluster only through machineid.api."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from machineid.api import certs
from machineid.api.client import Client, identity_from_certs
from machineid.api.identity import Identity, write_private
from machineid.cli import changes, fmt
from machineid.cli.labels import format_labels, parse_labels
from machineid.cli.node_cmd import sshd_config_lines
from machineid.cli.parser import subcommands
from machineid.model import audit_actions, codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    TransportError,
    UnauthenticatedError,
    ValidationError,
)
from machineid.model.resources import (
    DEFAULT_TOKEN_TTL,
    KIND_ALIASES,
    KINDS,
    Bot,
    BotSpec,
    Metadata,
    Node,
    NodeSpec,
    ProvisionToken,
    Resource,
    User,
)

# Versions written in YAML (Teleport's for the kinds it has); any of these is accepted on input.
VERSIONS = {"role": "v5", "token": "v2", "bot": "v1", "user": "v2", "node": "v2"}


CTL_EXAMPLES = """\
examples:
  machineid ctl --data-dir ./cluster status
  machineid ctl get roles --format json --auth-server HOST:3025 --identity ./admin.identity
  machineid ctl create -f cluster.yaml --dry-run
  machineid ctl edit role/access
  machineid ctl bots add robot --roles=access --logins=root --format json
  machineid ctl audit --since 1h --action bot.join --format jsonl --follow
"""
STATUS_EXAMPLES = """\
examples:
  machineid ctl --data-dir ./cluster status
  machineid ctl --identity /opt/machine-id/identity --auth-server HOST:3025 status --format json
"""
_OUTPUTS = ["text", "json"]
_LISTINGS = ["text", "yaml", "json"]


def connection_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    """On `ctl` itself with their defaults, and on every ctl command with none, so they work on either side of
    the command (`ctl get roles --data-dir DIR`)."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--auth-server", default=default(os.environ.get("MACHINEID_AUTH_SERVER", "")), metavar="HOST:PORT",
                   help="the cluster's address (env MACHINEID_AUTH_SERVER)")
    p.add_argument("--identity", default=default(os.environ.get("MACHINEID_IDENTITY", "")), metavar="FILE",
                   help="identity file (env MACHINEID_IDENTITY)")
    p.add_argument("--data-dir", type=Path, default=default(os.environ.get("MACHINEID_DATA_DIR") or None),
                   metavar="DIR", help="the server's data dir, on the server's host: address and admin identity "
                                       "from there (env MACHINEID_DATA_DIR)")


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for a in subs for child in dict.fromkeys(a.choices.values()) for leaf in _leaves(child)]


def _format(p: argparse.ArgumentParser, choices: list[str], default: str = "text") -> None:
    p.add_argument("--format", default=default, choices=choices, help="output format")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ctl = sub.add_parser("ctl", help="administer the cluster (the tctl analogue)", epilog=CTL_EXAMPLES,
                         description="Administer the cluster: resources, bots, tokens, users, nodes, audit.")
    connection_flags(ctl, suppress=False)
    csub = subcommands(ctl, "ctl_cmd")

    get = csub.add_parser("get", help="show resources: get roles, get role/NAME",
                          epilog="examples:\n  machineid ctl get roles\n  machineid ctl get role/access --format json")
    get.add_argument("ref", metavar="KIND[/NAME]", help="roles, tokens, bots, users or nodes, or one of them by name")
    _format(get, ["yaml", "json", "text"], "yaml")
    get.set_defaults(func=cmd_get)

    create = csub.add_parser("create", help="create or update resources from YAML (kinds role, token, bot, ...)",
                             epilog="examples:\n  machineid ctl create -f cluster.yaml\n"
                                    "  machineid ctl create -f role.yaml --dry-run")
    create.add_argument("-f", "--file", required=True, help="YAML file, - for stdin; several documents allowed")
    create.add_argument("--force", action="store_true", help="overwrite existing resources")
    create.add_argument("--dry-run", action="store_true",
                        help="check every document, and say what would be created or updated, without writing")
    _format(create, _OUTPUTS)
    create.set_defaults(func=cmd_create)

    edit = csub.add_parser("edit", help="edit a resource in $EDITOR and apply it safely",
                           epilog="examples:\n  machineid ctl edit role/access\n"
                                  "  machineid ctl edit user/alice --format json",
                           description="Opens the resource's YAML in $VISUAL or $EDITOR (vi); on save, applies it "
                                       "with its revision, so a change someone made meanwhile is not overwritten.")
    edit.add_argument("ref", metavar="KIND/NAME")
    _format(edit, _OUTPUTS)
    edit.set_defaults(func=cmd_edit)

    rm = csub.add_parser("rm", help="delete a resource: rm KIND/NAME",
                         epilog="examples:\n  machineid ctl rm role/old-role\n"
                                "  machineid ctl rm node/web1 --format json")
    rm.add_argument("ref", metavar="KIND/NAME")
    _format(rm, _OUTPUTS)
    rm.set_defaults(func=cmd_rm)

    bots = subcommands(csub.add_parser("bots", help="manage bots"), "bots_cmd")
    add = bots.add_parser("add", help="create a bot, its user and role, and a join token",
                          epilog="example:\n  machineid ctl bots add robot --roles=access --logins=root")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help="comma-separated roles the bot's certificates carry")
    add.add_argument("--logins", default="", help="comma-separated logins (the bot's `logins` trait)")
    add.add_argument("--token", default="", help="use this existing token (e.g. an iam token)")
    add.add_argument("--ttl", default="", help=f"lifetime of the new join token (default {DEFAULT_TOKEN_TTL})")
    _format(add, _OUTPUTS)
    add.set_defaults(func=cmd_bots_add)
    bls = bots.add_parser("ls", help="list bots",
                          epilog="examples:\n  machineid ctl bots ls\n  machineid ctl bots ls --format json")
    _format(bls, _LISTINGS)
    bls.set_defaults(func=lambda a: cmd_get_kind(a, "bot"))
    brm = bots.add_parser("rm", help="delete a bot with its user, role and tokens",
                          epilog="example:\n  machineid ctl bots rm robot")
    brm.add_argument("name")
    _format(brm, _OUTPUTS)
    brm.set_defaults(func=lambda a: cmd_rm_kind(a, "bot", a.name))
    unlock = bots.add_parser("unlock", help="unlock a bot locked by a generation mismatch",
                             epilog="examples:\n  machineid ctl bots unlock robot\n"
                                    "  machineid ctl tokens add --type=bot --bot-name=robot   # then join again")
    unlock.add_argument("name")
    _format(unlock, _OUTPUTS)
    unlock.set_defaults(func=cmd_bots_unlock)

    tokens = subcommands(csub.add_parser("tokens", help="manage join tokens"), "tokens_cmd")
    tadd = tokens.add_parser("add", help="create a join token",
                             epilog="example:\n  machineid ctl tokens add --type=bot --bot-name=robot --ttl=30m")
    tadd.add_argument("--type", required=True, choices=["bot"], help="what the token joins")
    tadd.add_argument("--bot-name", required=True, help="the bot the token joins")
    tadd.add_argument("--ttl", default=DEFAULT_TOKEN_TTL, help="how long the token may be used")
    _format(tadd, _OUTPUTS)
    tadd.set_defaults(func=cmd_tokens_add)
    tls = tokens.add_parser("ls", help="list join tokens",
                            epilog="examples:\n  machineid ctl tokens ls\n  machineid ctl tokens ls --format json")
    _format(tls, _LISTINGS)
    tls.set_defaults(func=lambda a: cmd_get_kind(a, "token"))
    trm = tokens.add_parser("rm", help="delete a join token",
                            epilog="example:\n  machineid ctl tokens rm robot-key")
    trm.add_argument("name")
    _format(trm, _OUTPUTS)
    trm.set_defaults(func=lambda a: cmd_rm_kind(a, "token", a.name))

    users = subcommands(csub.add_parser("users", help="manage users"), "users_cmd")
    uadd = users.add_parser("add", help="create a user",
                            epilog="example:\n  machineid ctl users add alice --roles=auditor --logins=alice")
    uadd.add_argument("name")
    uadd.add_argument("--roles", required=True, help="comma-separated roles")
    uadd.add_argument("--logins", default="", help="comma-separated logins (the user's `logins` trait)")
    _format(uadd, _OUTPUTS)
    uadd.set_defaults(func=cmd_users_add)
    uls = users.add_parser("ls", help="list users",
                           epilog="examples:\n  machineid ctl users ls\n  machineid ctl users ls --format json")
    _format(uls, _LISTINGS)
    uls.set_defaults(func=lambda a: cmd_get_kind(a, "user"))
    urm = users.add_parser("rm", help="delete a user", epilog="example:\n  machineid ctl users rm alice")
    urm.add_argument("name")
    _format(urm, _OUTPUTS)
    urm.set_defaults(func=lambda a: cmd_rm_kind(a, "user", a.name))

    nodes = subcommands(csub.add_parser("nodes", help="register, list and remove SSH nodes"), "nodes_cmd")
    nadd = nodes.add_parser("add", help="register a node and write its host key and host certificate",
                            epilog="example:\n  machineid ctl nodes add web1 --addr 10.0.0.5:22 --labels env=prod "
                                   "--out /etc/ssh/machineid_host")
    nadd.add_argument("name")
    nadd.add_argument("--addr", required=True, help="host:port of the node's sshd")
    nadd.add_argument("--labels", default="", help="comma-separated key=value labels")
    nadd.add_argument("--out", required=True, type=Path,
                      help="host key path prefix: writes PREFIX, PREFIX.pub and PREFIX-cert.pub")
    nadd.add_argument("--ttl", default="", help="host certificate lifetime (default 365 days)")
    nadd.add_argument("--force", action="store_true", help="replace a node already registered under that name")
    _format(nadd, _OUTPUTS)
    nadd.set_defaults(func=cmd_nodes_add)
    nls = nodes.add_parser("ls", help="list the nodes your roles allow (the tsh ls analogue)",
                           epilog="examples:\n  machineid ctl nodes ls\n  machineid ctl nodes ls --format json")
    _format(nls, _LISTINGS)
    nls.set_defaults(func=lambda a: cmd_get_kind(a, "node"))
    nrm = nodes.add_parser("rm", help="remove a node (bots stop listing it; its host certificate stays valid "
                                      "until it expires)", epilog="example:\n  machineid ctl nodes rm web1")
    nrm.add_argument("name")
    _format(nrm, _OUTPUTS)
    nrm.set_defaults(func=lambda a: cmd_rm_kind(a, "node", a.name))

    auth = subcommands(csub.add_parser("auth", help="certificate authorities and identities"), "auth_cmd")
    export = auth.add_parser("export", help="print CA public keys/certificates",
                             epilog="examples:\n  machineid ctl auth export --type=user > /etc/ssh/user_ca.pub\n"
                                    "  machineid ctl auth export --type=host >> ~/.ssh/known_hosts")
    export.add_argument("--type", default="", choices=["", "user", "host", "tls"],
                        help="one CA (default: all): user (TrustedUserCAKeys form), host (known_hosts form), tls")
    _format(export, _OUTPUTS)
    export.set_defaults(func=cmd_auth_export)
    sign = auth.add_parser("sign", help="issue an identity file for a user",
                           epilog="examples:\n  machineid ctl auth sign --user alice --out ./alice.identity --ttl 8h\n"
                                  "  machineid ctl --identity ./alice.identity --auth-server HOST:3025 status")
    sign.add_argument("--user", required=True, help="the user the identity is for")
    sign.add_argument("--out", required=True, type=Path, help="the identity file to write (0600)")
    sign.add_argument("--ttl", default="1h", help="how long the certificates are valid")
    _format(sign, _OUTPUTS)
    sign.set_defaults(func=cmd_auth_sign)

    audit = csub.add_parser("audit", help="show the audit log",
                            description="Every matching event, oldest first. --format jsonl prints one JSON object "
                                        "per line, for a SIEM (with --follow, as they happen).",
                            epilog="examples:\n  machineid ctl audit --since 1h --action bot.join\n"
                                   "  machineid ctl audit --user robot --limit 20\n"
                                   "  machineid ctl audit --format jsonl --follow\n\n"
                                   "actions:\n" + textwrap.fill(", ".join(audit_actions.ACTIONS), 100,
                                                                initial_indent="  ", subsequent_indent="  "))
    _format(audit, ["text", "json", "jsonl"])
    audit.add_argument("--after", type=int, default=0, metavar="ID", help="only events after this id")
    audit.add_argument("--since", default="", metavar="WHEN",
                       help="only events this long ago or later (1h, 30m) or since a time (2026-01-31T00:00:00Z)")
    audit.add_argument("--action", "--kind", dest="kind", default="", metavar="ACTION",
                       help="only this action (bot.join) or family of actions (bot, cert, token, access)")
    audit.add_argument("--user", default="", metavar="NAME", help="only events by this user or bot")
    audit.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events (the newest N)")
    audit.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    audit.set_defaults(func=cmd_audit)

    status = csub.add_parser("status", help="who am I, on which cluster (whoami)", epilog=STATUS_EXAMPLES,
                             description="The cluster's name, version and CA pin, and this identity's user, roles "
                                         "and certificate expiry.")
    _format(status, _OUTPUTS)
    status.set_defaults(func=cmd_status)
    whoami = csub.add_parser("whoami", help="the same as status", epilog=STATUS_EXAMPLES)
    _format(whoami, _OUTPUTS)
    whoami.set_defaults(func=cmd_status)

    for leaf in _leaves(ctl):
        connection_flags(leaf, suppress=True)


# ---------------------------------------------------------------- connection


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # nothing to go by: let the connection say
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def connect(args: argparse.Namespace) -> Client:
    """The client for the cluster the flags name. What is missing says which exit code: no identity is "not
    authenticated" (5), no address or a server that is not running is "cannot reach the cluster" (6)."""
    address, identity_path = args.auth_server, args.identity
    if args.data_dir:
        server_json = Path(args.data_dir) / "server.json"
        if not address:
            try:
                info = json.loads(server_json.read_text())
                address = info["address"]
            except (OSError, ValueError, KeyError):
                raise TransportError(f"--data-dir: {server_json} not found; is `machineid server start --data-dir "
                                     f"{args.data_dir}` running?") from None
            if not _pid_alive(info.get("pid")):
                raise TransportError(f"--data-dir: the server recorded in {server_json} (pid {info.get('pid')}) is "
                                     f"not running; start it with `machineid server start --data-dir "
                                     f"{args.data_dir}`") from None
        identity_path = identity_path or str(Path(args.data_dir) / "admin.identity")
    if not identity_path:
        flags, env = ("--identity FILE", "MACHINEID_IDENTITY") if address else (
            "--auth-server HOST:PORT and --identity FILE", "MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY")
        raise UnauthenticatedError(f"no identity to talk to the cluster with: pass {flags} (or set {env}), or "
                                   "--data-dir on the server's host")
    if not address:
        raise TransportError("no cluster to talk to: pass --auth-server HOST:PORT (or set MACHINEID_AUTH_SERVER), or "
                             "--data-dir on the server's host")
    if not Path(identity_path).exists():
        raise UnauthenticatedError(f"--identity: {identity_path} does not exist; pass the identity file that "
                                   "`machineid ctl auth sign` wrote, or a bot's destination `identity`")
    try:
        identity = Identity.load(identity_path)
    except ValueError as e:
        raise ValidationError(f"--identity: {e}") from None
    return Client(address, identity)


def _kind(ref: str) -> tuple[str, str]:
    kind, _, name = ref.partition("/")
    if kind.lower() not in KIND_ALIASES:
        raise ValidationError(f'"{kind}" is not a resource kind; use one of {", ".join(sorted(KINDS))}')
    return KIND_ALIASES[kind.lower()], name


def _parse_ttl(value: str, flag: str) -> timedelta | None:
    if not value:
        return None
    reason = v.duration(min_seconds=1).check(value)
    if reason:
        raise ValidationError(f"{flag}: {reason}")
    return v.parse_duration(value)


def _csv(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


# ---------------------------------------------------------------- documents


def to_document(obj: Resource, every_field: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": obj.kind, "version": VERSIONS[obj.kind]}
    doc.update(codec.encode(obj, omit_empty=not every_field))
    doc.setdefault("spec", {})
    if isinstance(obj, ProvisionToken) and obj.spec.join_method != "bound_keypair" and not every_field:
        doc["spec"].pop("bound_keypair", None)  # its defaults, which other methods do not take
    return doc


def from_document(doc: Any, index: int) -> Resource:
    where = f"document {index + 1}"
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}: must be a mapping with kind, version, metadata and spec")
    kind = str(doc.get("kind", "")).lower()
    if kind not in KINDS:
        raise ValidationError(f'{where}: kind: "{doc.get("kind", "")}" is not a resource kind; use one of '
                              f'{", ".join(sorted(KINDS))}')
    version = doc.get("version")
    if version not in (None, VERSIONS[kind]):
        raise ValidationError(f'{where}: version: "{version}" is not a version of kind {kind}; use '
                              f"{VERSIONS[kind]} (or leave it out)")
    body = {k: val for k, val in doc.items() if k not in ("kind", "version")}
    body.pop("status", None)  # server-set; ignored on input
    try:
        obj: Resource = codec.decode_and_validate(KINDS[kind], body)
    except ValidationError as e:
        raise ValidationError([FieldViolation((), f"{where} ({kind}): {x}") for x in e.violations]) from None
    return obj


def _dump(objs: list[Resource], form: str, one: bool) -> str:
    """JSON: a list for a listing (also of one or none), an object for one named resource, and every field, zero
    values too, so a script never meets a missing key. YAML: the compact documents `create -f` takes back."""
    if form == "json":
        docs = [to_document(o, every_field=True) for o in objs]
        return json.dumps(docs[0] if one else docs, indent=2) + "\n"
    return yaml.safe_dump_all([to_document(o) for o in objs], sort_keys=False)


def _emit(args: argparse.Namespace, text: str, data: object) -> None:
    """A command's result: `text` for people, `data` as JSON for scripts."""
    if getattr(args, "format", "text") == "json":
        print(json.dumps(data, indent=2))
    elif text:
        print(text)


# ---------------------------------------------------------------- commands


def cmd_get(args: argparse.Namespace) -> int:
    kind, name = _kind(args.ref)
    return cmd_get_kind(args, kind, name)


def cmd_get_kind(args: argparse.Namespace, kind: str, name: str = "") -> int:
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


def _read_documents(source: str, text: str | None = None) -> list[Resource]:
    if text is None:
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as e:
            raise ValidationError(f"-f: cannot read {source}: {e.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ValidationError(f"-f: {source} is not valid YAML: {e}") from None
    if not docs:
        raise ValidationError(f"-f: {source} holds no resource")
    return [from_document(d, i) for i, d in enumerate(docs)]  # checks every document before writing any


def _shown_name(obj: Resource, generated: str = "") -> str:
    """A token of the token method is its secret: shown once when the cluster generated it, never repeated."""
    if isinstance(obj, ProvisionToken) and obj.spec.join_method == "token":
        return generated or "(secret)"
    return obj.metadata.name


def cmd_create(args: argparse.Namespace) -> int:
    objs = _read_documents(args.file)
    results: list[dict[str, Any]] = []
    with connect(args) as client:
        for obj in objs:
            results.append(_apply(client, obj, args.force, args.dry_run))
    _emit(args, "\n".join(r.pop("_text") for r in results), results)
    return 0


def _exists(client: Client, obj: Resource) -> Resource | None:
    if not obj.metadata.name:
        return None
    try:
        return client.get(obj.kind, obj.metadata.name)
    except NotFoundError:
        return None


def _exists_error(obj: Resource) -> AlreadyExistsError:
    return AlreadyExistsError(f'{obj.kind} "{_shown_name(obj)}" already exists; pass --force to overwrite it, or edit '
                              f"the output of `get {obj.kind}/{obj.metadata.name}` (its revision makes the update "
                              "safe)")


def _apply(client: Client, obj: Resource, force: bool, dry_run: bool) -> dict[str, Any]:
    """Creates or updates one resource; the result as JSON, with `_text` for people. Writing what is already
    stored changes nothing (the cluster keeps the revision and writes no audit record): said as "unchanged"."""
    if dry_run:
        return _dry_run(client, obj, force)
    if isinstance(obj, Bot):
        return _apply_bot(client, obj, force)
    may_update = force or bool(obj.metadata.revision)
    before = _readable(client, obj) if may_update else None
    try:
        out = client.upsert(obj, create_only=not may_update)
    except AlreadyExistsError:
        raise _exists_error(obj) from None
    if before is not None:
        created = False
    else:  # not there before, or not readable by this caller: the cluster's timestamps say
        created = out.metadata.created is not None and out.metadata.created == out.metadata.updated
    name = _shown_name(obj, out.metadata.name if created and not obj.metadata.name else "")
    if before is not None and out.metadata.revision == before.metadata.revision:
        return _unchanged(obj, out.metadata.revision)
    action = "created" if created else "updated"
    return {"kind": obj.kind, "name": name, "action": action, "revision": out.metadata.revision,
            "_text": f'{obj.kind} "{name}" has been {action} (revision {out.metadata.revision})'}


def _readable(client: Client, obj: Resource) -> Resource | None:
    """The stored object before a write that may update it; None when there is none, or the caller may write but
    not read it."""
    try:
        return _exists(client, obj)
    except PermissionDeniedError:
        return None


def _unchanged(obj: Resource, revision: str, dry_run: bool = False) -> dict[str, Any]:
    note = "dry run: nothing was written" if dry_run else f"revision {revision}"
    return {"kind": obj.kind, "name": _shown_name(obj), "action": "unchanged", "revision": revision,
            "_text": f'{obj.kind} "{_shown_name(obj)}" is unchanged ({note})'}


def _dry_run(client: Client, obj: Resource, force: bool) -> dict[str, Any]:
    """What create -f would do, checked as the write would check it, with the fields an update would change."""
    current = _exists(client, obj)
    if current is not None and not (force or obj.metadata.revision):
        raise _exists_error(obj)
    if current is not None and obj.metadata.revision and obj.metadata.revision != current.metadata.revision:
        raise PreconditionError(f'{obj.kind} "{_shown_name(obj)}" was changed since revision '
                                f"{obj.metadata.revision}; get it again")
    name = _shown_name(obj)
    if current is None:
        return {"kind": obj.kind, "name": name, "action": "would_be_created", "revision": "",
                "_text": f'{obj.kind} "{name}" would be created (dry run: nothing was written)'}
    found = changes.diff(current, changes.as_written(current, obj, datetime.now(UTC)))
    if not found:
        return _unchanged(obj, current.metadata.revision, dry_run=True)
    return {"kind": obj.kind, "name": name, "action": "would_be_updated", "revision": "",
            "changes": [c.data() for c in found],
            "_text": f'{obj.kind} "{name}" would be updated (dry run: nothing was written):\n'
                     + "\n".join(f"  {c.text()}" for c in found)}


def _apply_bot(client: Client, bot: Bot, force: bool) -> dict[str, Any]:
    current = _exists(client, bot)
    if current is not None:
        if not (force or bot.metadata.revision):
            raise AlreadyExistsError(f'bot "{bot.metadata.name}" already exists; pass --force to update its roles '
                                     "and traits")
        out = client.update_bot(bot)
        if out.metadata.revision == current.metadata.revision:
            return _unchanged(bot, out.metadata.revision)
        return {"kind": "bot", "name": bot.metadata.name, "action": "updated", "revision": out.metadata.revision,
                "_text": f'bot "{bot.metadata.name}" has been updated (revision {out.metadata.revision})'}
    created = client.create_bot(bot)
    data = _bot_created(client, created.bot.metadata.name, created.token, created.join_method,
                        created.token_expires, created.ca_pins)
    return {"kind": "bot", "name": bot.metadata.name, "action": "created", "revision": created.bot.metadata.revision,
            **data, "_text": _bot_created_text(client, data)}


def cmd_edit(args: argparse.Namespace) -> int:
    import shlex
    import subprocess
    import tempfile

    kind, name = _kind(args.ref)
    if not name:
        raise ValidationError(f'edit: name the resource as KIND/NAME, e.g. "{kind}/example"')
    if kind == "token":
        raise ValidationError("edit: tokens are not edited (a token-method token's name is its secret); create a "
                              "new one with `tokens add` and remove the old one")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with connect(args) as client:
        current = client.get(kind, name)
        before = yaml.safe_dump(to_document(current), sort_keys=False)
        with tempfile.TemporaryDirectory(prefix="machineid-edit-") as tmp:
            path = Path(tmp) / f"{kind}-{name}.yaml"
            path.write_text(before)
            if subprocess.run([*shlex.split(editor), str(path)]).returncode != 0:
                raise ValidationError(f"edit: the editor ({editor}) failed; nothing was changed")
            after = path.read_text()
        if after == before:
            _emit(args, f"{kind} \"{name}\" is unchanged",
                  {"kind": kind, "name": name, "action": "unchanged", "revision": current.metadata.revision})
            return 0
        objs = _read_documents(str(path), after)
        if len(objs) != 1 or objs[0].kind != kind or objs[0].metadata.name != name:
            raise ValidationError(f"edit: the file must still hold {kind}/{name} alone; nothing was changed")
        obj = objs[0]
        obj.metadata.revision = obj.metadata.revision or current.metadata.revision  # safe: fails if changed since
        result = _apply(client, obj, force=False, dry_run=False)
    _emit(args, result.pop("_text"), result)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    kind, name = _kind(args.ref)
    if not name:
        raise ValidationError(f'rm: name the resource as KIND/NAME, e.g. "{kind}/example"')
    return cmd_rm_kind(args, kind, name)


def cmd_rm_kind(args: argparse.Namespace, kind: str, name: str) -> int:
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
    _emit(args, f'{kind} "{shown}" has been deleted{at}',
          {"kind": kind, "name": shown, "action": "deleted", "revision": revision})
    return 0


def _agent_command(address: str, token: str, method: str, pin: str) -> str:
    return (
        "machineid bot start \\\n"
        "   --data-dir=./machineid-bot \\\n"
        "   --destination-dir=./machine-id \\\n"
        f"   --token={token} \\\n"
        f"   --join-method={method} \\\n"
        f"   --ca-pin={pin} \\\n"
        f"   --auth-server={address}"
    )


def _bot_created(client: Client, name: str, token: str, method: str, expires: datetime | None,
                 pins: list[str]) -> dict[str, Any]:
    """The same fields wherever a join token is handed out (bots add, tokens add, create -f), named as the
    providers name them."""
    return {"bot": name, "token": token, "join_method": method,
            "token_expires": codec.format_time(expires) if expires else None, "ca_pins": list(pins),
            "auth_server": client.address}


def _bot_created_text(client: Client, data: dict[str, Any], created: bool = True) -> str:
    left = ""
    expires = data["token_expires"]
    if expires:
        minutes = max(0, round((codec.parse_time(expires) - datetime.now(UTC)).total_seconds() / 60))
        left = (f"This token will expire in {minutes} minutes.\n" if minutes <= 48 * 60
                else f"This token will expire at {expires}.\n")
    pin = data["ca_pins"][0]
    head = f'The bot "{data["bot"]}" has been created.\n\n' if created else ""
    return (f"{head}The bot token: {data['token']}\n{left}CA pin: {pin}\n\n"
            f"Run this on the machine that needs the identity:\n\n"
            f"{_agent_command(client.address, data['token'], data['join_method'], pin)}\n")


def cmd_bots_add(args: argparse.Namespace) -> int:
    bot = Bot(metadata=Metadata(name=args.name),
              spec=BotSpec(roles=_csv(args.roles), traits={"logins": _csv(args.logins)} if args.logins else {}))
    ttl = _parse_ttl(args.ttl, "--ttl")
    with connect(args) as client:
        out = client.create_bot(bot, token_name=args.token, token_ttl=ttl)
        data = _bot_created(client, args.name, out.token, out.join_method, out.token_expires, out.ca_pins)
        _emit(args, _bot_created_text(client, data), data)
    return 0


def cmd_bots_unlock(args: argparse.Namespace) -> int:
    with connect(args) as client:
        out = client.unlock_bot(args.name)
    _emit(args, f'bot "{args.name}" has been unlocked (revision {out.metadata.revision}). Its existing '
                "certificates can no longer renew (whoever copied them is shut out too): give its agent a new join "
                "token, from\n\n"
                f"  machineid ctl tokens add --type=bot --bot-name={args.name}",
          {"kind": "bot", "name": args.name, "action": "unlocked", "revision": out.metadata.revision,
           "next": f"machineid ctl tokens add --type=bot --bot-name={args.name}"})
    return 0


def cmd_tokens_add(args: argparse.Namespace) -> int:
    ttl = _parse_ttl(args.ttl, "--ttl") or v.parse_duration(DEFAULT_TOKEN_TTL)
    token = ProvisionToken(metadata=Metadata(expires=datetime.now(UTC) + ttl))
    token.spec.bot_name = args.bot_name
    with connect(args) as client:
        client.get_bot(args.bot_name)
        out = client.upsert(token, create_only=True)
        pins = list(client.ping().ca_pins)
        assert isinstance(out, ProvisionToken)
        data = _bot_created(client, args.bot_name, out.metadata.name, "token", out.metadata.expires, pins)
        _emit(args, _bot_created_text(client, data, created=False), data)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    user = User(metadata=Metadata(name=args.name))
    user.spec.roles = _csv(args.roles)
    if args.logins:
        logins = _csv(args.logins)
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
    _emit(args, f'user "{args.name}" has been created',
          {"kind": "user", "name": args.name, "action": "created", "revision": out.metadata.revision})
    return 0


def cmd_auth_export(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cas = client.export_cas(args.type)
    if args.format == "json":
        _emit(args, "", [{"type": ca.type, "cluster_name": ca.cluster_name, "public_data": ca.public_data,
                          "pin": ca.pin} for ca in cas])
        return 0
    for ca in cas:
        if ca.type == "host":
            # known_hosts form, as `ssh -o UserKnownHostsFile` reads it
            print(f"@cert-authority *.{ca.cluster_name},{ca.cluster_name} {ca.public_data} type=host")
        elif ca.type == "user":
            # TrustedUserCAKeys form: one public key per line
            print(ca.public_data)
        else:
            sys.stdout.write(ca.public_data)
    return 0


def _writable_file(path: Path, flag: str) -> None:
    """Checked before anything is issued or registered: a result with nowhere to go is lost (and a node would be
    registered without its key)."""
    if str(path).endswith("/") or path.is_dir():
        raise ValidationError(f"{flag}: {path} is a directory; name the file to write, e.g. {path / 'identity'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValidationError(f"{flag}: the directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValidationError(f"{flag}: cannot write into {parent}")


def cmd_auth_sign(args: argparse.Namespace) -> int:
    ttl = _parse_ttl(args.ttl, "--ttl")
    _writable_file(args.out, "--out")
    key = certs.new_key()
    with connect(args) as client:
        out = client.sign_user(args.user, certs.public_key_pem(key.public_key()), ttl)
    ident = identity_from_certs(certs.private_key_pem(key), out)
    write_private(args.out, ident.dumps())
    _emit(args, f"The identity of {args.user} has been written to {args.out} (valid until "
                f"{codec.format_time(ident.expires)})",
          {"user": args.user, "path": str(args.out), "expires": codec.format_time(ident.expires)})
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        ping = client.ping()
        info = client.identity.info
        expires = client.identity.expires
    data: dict[str, Any] = {"cluster": ping.cluster_name, "address": client.address, "version": ping.server_version,
            "ca_pins": list(ping.ca_pins), "user": info.user, "roles": list(info.roles),
            "bot": info.bot_name, "renewable": info.renewable, "expires": codec.format_time(expires)}
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        left = expires - datetime.now(UTC)
        print(f"Cluster:  {data['cluster']} at {data['address']} (server {data['version']})\n"
              f"CA pin:   {', '.join(data['ca_pins'])}\n"
              f"User:     {data['user']}" + (f" (bot {info.bot_name})" if info.bot_name else "") + "\n"
              f"Roles:    {', '.join(data['roles']) or 'none'}\n"
              f"Expires:  {data['expires']} (in {max(0, int(left.total_seconds() // 60))} minutes)")
    return 0


def _since(value: str) -> datetime | None:
    if not value:
        return None
    if not v.duration(min_seconds=1).check(value):
        return datetime.now(UTC) - v.parse_duration(value)
    try:
        return codec.parse_time(value)
    except ValueError:
        raise ValidationError(f'--since: "{v.shown(value)}" is neither a duration (1h, 30m) nor a time '
                              "(2026-01-31T00:00:00Z)") from None


def _event_json(e: Any) -> dict[str, Any]:
    return {"id": e.id, "time": e.time.ToJsonString(), "actor": e.actor, "action": e.action, "target": e.target,
            "outcome": e.outcome, "details": json.loads(e.details or "{}")}


AUDIT_PAGE = 1000
FOLLOW_PAUSE = 2.0


def cmd_audit(args: argparse.Namespace) -> int:
    since = _since(args.since)
    if args.kind and (reason := audit_actions.unknown(args.kind)):
        raise ValidationError(f"--action: {reason}")
    if args.limit < 0:
        raise ValidationError("--limit: must be positive (or 0 for every event)")
    if args.follow and args.format == "json":
        raise ValidationError("--follow: a JSON array never ends; use --format jsonl (one event per line) or text")
    with connect(args) as client:
        def page(after: int) -> list[Any]:
            return client.audit_events(after_id=after, limit=AUDIT_PAGE, since=since, action=args.kind,
                                       actor=args.user)

        events: list[Any] = []
        after = args.after
        while batch := page(after):
            events += batch
            if args.limit and len(events) > args.limit:
                events = events[-args.limit:]  # the newest N, without holding the whole log
            after = batch[-1].id
        if args.format == "json":
            print(json.dumps([_event_json(e) for e in events], indent=2))
            return 0
        if args.format == "text":
            rows = [[str(e.id), e.time.ToJsonString(), e.actor, e.action, e.target, e.outcome] for e in events]
            sys.stdout.write(fmt.render(["ID", "Time", "Actor", "Action", "Target", "Outcome"], rows))
        else:
            for e in events:
                print(json.dumps(_event_json(e), sort_keys=True))
        sys.stdout.flush()
        while args.follow:
            time.sleep(FOLLOW_PAUSE)
            while batch := page(after):
                for e in batch:
                    if args.format == "text":
                        print(f"{e.id}  {e.time.ToJsonString()}  {e.actor}  {e.action}  {e.target}  {e.outcome}")
                    else:
                        print(json.dumps(_event_json(e), sort_keys=True))
                after = batch[-1].id
                sys.stdout.flush()
    return 0


def cmd_nodes_add(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    node = Node(metadata=Metadata(name=args.name, labels=parse_labels(args.labels)), spec=NodeSpec(addr=args.addr))
    codec.validate(node)
    ttl = _parse_ttl(args.ttl, "--ttl")
    _writable_file(args.out, "--out")
    key = ed25519.Ed25519PrivateKey.generate()
    host = args.addr.rpartition(":")[0].strip("[]")
    with connect(args) as client:
        cluster = client.ping().cluster_name
        principals = list(dict.fromkeys([args.name, f"{args.name}.{cluster}", host]))
        existing = _exists(client, node)
        if isinstance(existing, Node) and not args.force:
            raise AlreadyExistsError(f'node "{args.name}" is already registered (at {existing.spec.addr}, labels '
                                     f"{format_labels(existing.metadata.labels) or 'none'}); pass --force to "
                                     "replace it")
        cert = client.sign_host(certs.ssh_public_key_line(key.public_key()), principals, ttl)
        stored = client.upsert(node)
    prefix: Path = args.out
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    write_private(prefix, private)
    write_private(prefix.with_name(prefix.name + ".pub"), certs.ssh_public_key_line(key.public_key()) + "\n", 0o644)
    write_private(prefix.with_name(prefix.name + "-cert.pub"), cert.strip() + "\n", 0o644)
    lines = sshd_config_lines(prefix, node.metadata.labels)
    _emit(args, f'node "{args.name}" registered at {args.addr} (revision {stored.metadata.revision}); host key '
                f"{prefix}, certificate {prefix}-cert.pub (principals {', '.join(principals)})\n\nIn the node's "
                "sshd_config (the user CA from `machineid ctl auth export --type=user`):\n\n"
                + "\n".join(f"  {line}" for line in lines),
          {"kind": "node", "name": args.name, "action": "created" if existing is None else "updated",
           "revision": stored.metadata.revision, "addr": args.addr, "host_key": str(prefix),
           "host_certificate": f"{prefix}-cert.pub", "principals": principals, "sshd_config": lines})
    return 0
