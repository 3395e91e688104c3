"""`machineid ctl`: the admin CLI (the `tctl` analogue). Talks to the cluster only through machineid.api."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from machineid.api import certs
from machineid.api.client import Client, identity_from_certs
from machineid.api.identity import Identity, write_private
from machineid.cli import fmt
from machineid.cli.labels import format_labels, parse_labels
from machineid.cli.node_cmd import sshd_config_lines
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import AlreadyExistsError, FieldViolation, NotFoundError, ValidationError
from machineid.model.resources import (
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


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ctl = sub.add_parser("ctl", help="administer the cluster (the tctl analogue)")
    ctl.add_argument("--auth-server", default=os.environ.get("MACHINEID_AUTH_SERVER", ""),
                     help="cluster address host:port (env MACHINEID_AUTH_SERVER)")
    ctl.add_argument("--identity", default=os.environ.get("MACHINEID_IDENTITY", ""),
                     help="identity file (env MACHINEID_IDENTITY)")
    ctl.add_argument("--data-dir", type=Path, default=os.environ.get("MACHINEID_DATA_DIR") or None,
                     help="the server's data dir, on the server's host: address and admin identity from there")
    csub = ctl.add_subparsers(dest="ctl_cmd", required=True, metavar="COMMAND")

    get = csub.add_parser("get", help="show resources: get roles, get role/NAME")
    get.add_argument("ref", help="KIND or KIND/NAME (roles, tokens, bots, users, nodes)")
    get.add_argument("--format", default="yaml", choices=["yaml", "json", "text"])
    get.set_defaults(func=cmd_get)

    create = csub.add_parser("create", help="create or update resources from YAML (kinds role, token, bot, ...)")
    create.add_argument("-f", "--file", required=True, help="YAML file, - for stdin; several documents allowed")
    create.add_argument("--force", action="store_true", help="overwrite existing resources")
    create.set_defaults(func=cmd_create)

    rm = csub.add_parser("rm", help="delete a resource: rm KIND/NAME")
    rm.add_argument("ref")
    rm.set_defaults(func=cmd_rm)

    bots = csub.add_parser("bots", help="manage bots").add_subparsers(dest="bots_cmd", required=True,
                                                                       metavar="COMMAND")
    add = bots.add_parser("add", help="create a bot, its user and role, and a join token")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help="comma-separated roles the bot's certificates carry")
    add.add_argument("--logins", default="", help="comma-separated logins (the bot's `logins` trait)")
    add.add_argument("--token", default="", help="use this existing token (e.g. an iam token)")
    add.add_argument("--ttl", default="", help="lifetime of the new join token (default 1h)")
    add.add_argument("--format", default="text", choices=["text", "json"])
    add.set_defaults(func=cmd_bots_add)
    bls = bots.add_parser("ls", help="list bots")
    bls.add_argument("--format", default="text", choices=["text", "yaml", "json"])
    bls.set_defaults(func=lambda a: cmd_get_kind(a, "bot"))
    brm = bots.add_parser("rm", help="delete a bot with its user, role and tokens")
    brm.add_argument("name")
    brm.set_defaults(func=lambda a: cmd_rm_kind(a, "bot", a.name))
    unlock = bots.add_parser("unlock", help="unlock a bot locked by a generation mismatch")
    unlock.add_argument("name")
    unlock.set_defaults(func=cmd_bots_unlock)

    tokens = csub.add_parser("tokens", help="manage join tokens").add_subparsers(dest="tokens_cmd", required=True,
                                                                                metavar="COMMAND")
    tadd = tokens.add_parser("add", help="create a join token")
    tadd.add_argument("--type", required=True, choices=["bot"], help="what the token joins")
    tadd.add_argument("--bot-name", required=True)
    tadd.add_argument("--ttl", default="1h")
    tadd.add_argument("--format", default="text", choices=["text", "json"])
    tadd.set_defaults(func=cmd_tokens_add)
    tls = tokens.add_parser("ls", help="list join tokens")
    tls.add_argument("--format", default="text", choices=["text", "yaml", "json"])
    tls.set_defaults(func=lambda a: cmd_get_kind(a, "token"))
    trm = tokens.add_parser("rm", help="delete a join token")
    trm.add_argument("name")
    trm.set_defaults(func=lambda a: cmd_rm_kind(a, "token", a.name))

    users = csub.add_parser("users", help="manage users").add_subparsers(dest="users_cmd", required=True,
                                                                          metavar="COMMAND")
    uadd = users.add_parser("add", help="create a user")
    uadd.add_argument("name")
    uadd.add_argument("--roles", required=True)
    uadd.add_argument("--logins", default="")
    uadd.set_defaults(func=cmd_users_add)
    uls = users.add_parser("ls", help="list users")
    uls.add_argument("--format", default="text", choices=["text", "yaml", "json"])
    uls.set_defaults(func=lambda a: cmd_get_kind(a, "user"))
    urm = users.add_parser("rm", help="delete a user")
    urm.add_argument("name")
    urm.set_defaults(func=lambda a: cmd_rm_kind(a, "user", a.name))

    nodes = csub.add_parser("nodes", help="register and list SSH nodes").add_subparsers(
        dest="nodes_cmd", required=True, metavar="COMMAND")
    nadd = nodes.add_parser("add", help="register a node and write its host key and host certificate")
    nadd.add_argument("name")
    nadd.add_argument("--addr", required=True, help="host:port of the node's sshd")
    nadd.add_argument("--labels", default="", help="comma-separated key=value labels")
    nadd.add_argument("--out", required=True, type=Path,
                      help="host key path prefix: writes PREFIX, PREFIX.pub and PREFIX-cert.pub")
    nadd.add_argument("--ttl", default="", help="host certificate lifetime (default 365 days)")
    nadd.add_argument("--force", action="store_true", help="replace a node already registered under that name")
    nadd.set_defaults(func=cmd_nodes_add)
    nls = nodes.add_parser("ls", help="list the nodes your roles allow (the tsh ls analogue)")
    nls.add_argument("--format", default="text", choices=["text", "yaml", "json"])
    nls.set_defaults(func=lambda a: cmd_get_kind(a, "node"))

    auth = csub.add_parser("auth", help="certificate authorities and identities").add_subparsers(
        dest="auth_cmd", required=True, metavar="COMMAND")
    export = auth.add_parser("export", help="print CA public keys/certificates")
    export.add_argument("--type", default="", choices=["", "user", "host", "tls"])
    export.set_defaults(func=cmd_auth_export)
    sign = auth.add_parser("sign", help="issue an identity file for a user")
    sign.add_argument("--user", required=True)
    sign.add_argument("--out", required=True, type=Path)
    sign.add_argument("--ttl", default="1h")
    sign.set_defaults(func=cmd_auth_sign)

    audit = csub.add_parser("audit", help="show the audit log",
                            description="Every matching event, oldest first. --format jsonl prints one JSON object "
                                        "per line, for a SIEM (with --follow, as they happen).")
    audit.add_argument("--format", default="text", choices=["text", "json", "jsonl"])
    audit.add_argument("--after", type=int, default=0, metavar="ID", help="only events after this id")
    audit.add_argument("--since", default="", metavar="WHEN",
                       help="only events this long ago or later (1h, 30m) or since a time (2026-01-31T00:00:00Z)")
    audit.add_argument("--kind", default="", metavar="ACTION",
                       help="only this action (bot.join) or family of actions (bot, cert, token, access)")
    audit.add_argument("--user", default="", metavar="NAME", help="only events by this user or bot")
    audit.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events (the newest N)")
    audit.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    audit.set_defaults(func=cmd_audit)

    status = csub.add_parser("status", help="who am I, on which cluster (whoami)",
                             description="The cluster's name, version and CA pin, and this identity's user, roles "
                                         "and certificate expiry.")
    status.add_argument("--format", default="text", choices=["text", "json"])
    status.set_defaults(func=cmd_status)
    whoami = csub.add_parser("whoami", help="the same as status")
    whoami.add_argument("--format", default="text", choices=["text", "json"])
    whoami.set_defaults(func=cmd_status)


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
    address, identity_path = args.auth_server, args.identity
    if args.data_dir:
        server_json = Path(args.data_dir) / "server.json"
        if not address:
            try:
                info = json.loads(server_json.read_text())
                address = info["address"]
            except (OSError, ValueError, KeyError):
                raise ValidationError(f"--data-dir: {server_json} not found; is `machineid server start --data-dir "
                                      f"{args.data_dir}` running?") from None
            if not _pid_alive(info.get("pid")):
                raise ValidationError(f"--data-dir: the server recorded in {server_json} (pid {info.get('pid')}) is "
                                      f"not running; start it with `machineid server start --data-dir "
                                      f"{args.data_dir}`") from None
        identity_path = identity_path or str(Path(args.data_dir) / "admin.identity")
    if not address or not identity_path:
        raise ValidationError("no cluster to talk to: pass --auth-server HOST:PORT and --identity FILE (or set "
                              "MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY), or --data-dir on the server's host")
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


def to_document(obj: Resource) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": obj.kind, "version": VERSIONS[obj.kind]}
    doc.update(codec.encode(obj, omit_empty=True))
    doc.setdefault("spec", {})
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


def _dump(objs: list[Resource], form: str) -> str:
    docs = [to_document(o) for o in objs]
    if form == "json":
        return json.dumps(docs if len(docs) != 1 else docs[0], indent=2) + "\n"
    return yaml.safe_dump_all(docs, sort_keys=False)


# ---------------------------------------------------------------- commands


def cmd_get(args: argparse.Namespace) -> int:
    kind, name = _kind(args.ref)
    return cmd_get_kind(args, kind, name)


def cmd_get_kind(args: argparse.Namespace, kind: str, name: str = "") -> int:
    with connect(args) as client:
        objs = [client.get(kind, name)] if name else client.list(kind)
    if args.format == "text":
        sys.stdout.write(fmt.table(kind, objs))
    else:
        sys.stdout.write(_dump(objs, args.format) if objs or args.format == "yaml" else "[]\n")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as e:
        raise ValidationError(f"-f: cannot read {args.file}: {e.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ValidationError(f"-f: {args.file} is not valid YAML: {e}") from None
    if not docs:
        raise ValidationError(f"-f: {args.file} holds no resource")
    objs = [from_document(d, i) for i, d in enumerate(docs)]  # checks every document before writing any
    with connect(args) as client:
        for obj in objs:
            if isinstance(obj, Bot):
                _create_bot_from_doc(client, obj, args.force)
                continue
            try:
                out = client.upsert(obj, create_only=not args.force and not obj.metadata.revision)
            except AlreadyExistsError:
                raise AlreadyExistsError(
                    f'{obj.kind} "{obj.metadata.name}" already exists; pass --force to overwrite it, or edit the '
                    f"output of `get {obj.kind}/{obj.metadata.name}` (its revision makes the update safe)"
                ) from None
            created = out.metadata.created is not None and out.metadata.created == out.metadata.updated
            secret = isinstance(obj, ProvisionToken) and obj.spec.join_method == "token"
            # A generated token is shown once, to the admin who asked for it; a given one is not repeated.
            label = out.metadata.name if not secret or (created and not obj.metadata.name) else "(secret)"
            print(f'{obj.kind} "{label}" has been {"created" if created else "updated"}'
                  f" (revision {out.metadata.revision})")
    return 0


def _create_bot_from_doc(client: Client, bot: Bot, force: bool) -> None:
    try:
        client.get_bot(bot.metadata.name)
        exists = True
    except NotFoundError:
        exists = False
    if exists:
        if not (force or bot.metadata.revision):
            raise AlreadyExistsError(f'bot "{bot.metadata.name}" already exists; pass --force to update its roles '
                                     "and traits")
        client.update_bot(bot)
        print(f'bot "{bot.metadata.name}" has been updated')
        return
    created = client.create_bot(bot)
    _print_bot_created(client, created.bot.metadata.name, created.token, created.join_method,
                       created.token_expires, created.ca_pins)


def cmd_rm(args: argparse.Namespace) -> int:
    kind, name = _kind(args.ref)
    if not name:
        raise ValidationError(f'rm: name the resource as KIND/NAME, e.g. "{kind}/example"')
    return cmd_rm_kind(args, kind, name)


def cmd_rm_kind(args: argparse.Namespace, kind: str, name: str) -> int:
    with connect(args) as client:
        client.delete(kind, name)
    shown = name if kind != "token" else "(secret)"
    print(f'{kind} "{shown}" has been deleted')
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


def _print_bot_created(client: Client, name: str, token: str, method: str, expires: datetime | None,
                       pins: list[str], form: str = "text") -> None:
    if form == "json":
        print(json.dumps({"bot": name, "token": token, "join_method": method,
                          "token_expires": codec.format_time(expires) if expires else None, "ca_pins": pins,
                          "auth_server": client.address}, indent=2))
        return
    left = ""
    if expires:
        minutes = max(0, int((expires - datetime.now(UTC)).total_seconds() // 60))
        left = (f"This token will expire in {minutes} minutes.\n" if minutes <= 48 * 60
                else f"This token will expire at {codec.format_time(expires)}.\n")
    print(f'The bot "{name}" has been created.\n\nThe bot token: {token}\n{left}CA pin: {pins[0]}\n\n'
          f"Run this on the machine that needs the identity:\n\n"
          f"{_agent_command(client.address, token, method, pins[0])}\n")


def cmd_bots_add(args: argparse.Namespace) -> int:
    bot = Bot(metadata=Metadata(name=args.name),
              spec=BotSpec(roles=_csv(args.roles), traits={"logins": _csv(args.logins)} if args.logins else {}))
    ttl = _parse_ttl(args.ttl, "--ttl")
    with connect(args) as client:
        out = client.create_bot(bot, token_name=args.token, token_ttl=ttl)
        _print_bot_created(client, args.name, out.token, out.join_method, out.token_expires, out.ca_pins,
                           args.format)
    return 0


def cmd_bots_unlock(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.unlock_bot(args.name)
    print(f'bot "{args.name}" has been unlocked. Its existing certificates can no longer renew (whoever copied them '
          "is shut out too): give its agent a new join token, from\n\n"
          f"  machineid ctl tokens add --type=bot --bot-name={args.name}")
    return 0


def cmd_tokens_add(args: argparse.Namespace) -> int:
    ttl = _parse_ttl(args.ttl, "--ttl") or timedelta(hours=1)
    token = ProvisionToken(metadata=Metadata(expires=datetime.now(UTC) + ttl))
    token.spec.bot_name = args.bot_name
    with connect(args) as client:
        client.get_bot(args.bot_name)
        out = client.upsert(token, create_only=True)
        pin = client.ping().ca_pins[0]
        assert isinstance(out, ProvisionToken)
        if args.format == "json":
            print(json.dumps({"token": out.metadata.name, "bot": args.bot_name, "ca_pin": pin,
                              "expires": codec.format_time(out.metadata.expires) if out.metadata.expires else None}))
        else:
            print(f"The bot token: {out.metadata.name}\nThis token will expire in "
                  f"{int(ttl.total_seconds() // 60)} minutes.\nCA pin: {pin}\n\n"
                  f"{_agent_command(client.address, out.metadata.name, 'token', pin)}")
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
        client.upsert(user, create_only=True)
    print(f'user "{args.name}" has been created')
    return 0


def cmd_auth_export(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cas = client.export_cas(args.type)
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
    print(f"The identity of {args.user} has been written to {args.out} (valid until "
          f"{codec.format_time(ident.expires)})")
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
        if not args.force:
            try:
                existing = client.get("node", args.name)
            except NotFoundError:
                pass
            else:
                raise AlreadyExistsError(f'node "{args.name}" is already registered (at {existing.spec.addr}, labels '  # type: ignore[union-attr]
                                         f"{format_labels(existing.metadata.labels) or 'none'}); pass --force to "
                                         "replace it")
        cert = client.sign_host(certs.ssh_public_key_line(key.public_key()), principals, ttl)
        client.upsert(node)
    prefix: Path = args.out
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    write_private(prefix, private)
    write_private(prefix.with_name(prefix.name + ".pub"), certs.ssh_public_key_line(key.public_key()) + "\n", 0o644)
    write_private(prefix.with_name(prefix.name + "-cert.pub"), cert.strip() + "\n", 0o644)
    print(f'node "{args.name}" registered at {args.addr}; host key {prefix}, certificate {prefix}-cert.pub '
          f"(principals {', '.join(principals)})")
    print("\nIn the node's sshd_config (the user CA from `machineid ctl auth export --type=user`):\n")
    print("\n".join(f"  {line}" for line in sshd_config_lines(prefix, node.metadata.labels)))
    return 0
