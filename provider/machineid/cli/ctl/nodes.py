"""`ctl nodes`: add (register a node, write its host key, host certificate and the user CA, print the `machineid node
setup` command that installs them on the node), ls, rm."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from machineid.api import certs
from machineid.api.identity import write_private
from machineid.cli.ctl import resources
from machineid.cli.ctl.common import OUTPUTS, emit, exists, format_flag, parse_ttl, writable_file
from machineid.cli.ctl.connection import connect
from machineid.cli.labels import format_labels, parse_labels
from machineid.cli.parser import subcommands
from machineid.model import codec
from machineid.model.errors import AlreadyExistsError
from machineid.model.resources import Metadata, Node, NodeSpec


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    nodes = subcommands(csub.add_parser("nodes", help="register, list and remove SSH nodes"), "nodes_cmd")
    nadd = nodes.add_parser("add", help="register a node and write its host key, host certificate and the user CA",
                            description="Register a node, write its host key (PREFIX, PREFIX.pub), host certificate "
                                        "(PREFIX-cert.pub) and the cluster's user CA (PREFIX-user_ca.pub), and print "
                                        "the `machineid node setup` command that installs them on the node.",
                            epilog="example:\n  machineid ctl nodes add web1 --addr 10.0.0.5:22 --labels env=prod "
                                   "--out web1/host_key")
    nadd.add_argument("name")
    nadd.add_argument("--addr", required=True, help="host:port of the node's sshd")
    nadd.add_argument("--labels", default="", help="comma-separated key=value labels")
    nadd.add_argument("--out", required=True, type=Path,
                      help="host key path prefix: writes PREFIX, PREFIX.pub, PREFIX-cert.pub and PREFIX-user_ca.pub")
    nadd.add_argument("--ttl", default="", help="host certificate lifetime (default 365 days)")
    nadd.add_argument("--force", action="store_true", help="replace a node already registered under that name")
    format_flag(nadd, OUTPUTS)
    nadd.set_defaults(func=cmd_nodes_add)
    nls = nodes.add_parser("ls", help="list the nodes your roles allow (the tsh ls analogue), with each one's state "
                                      "(online; stale after 3 missed heartbeats; never joined; locked), host "
                                      "certificate expiry and last heartbeat",
                           epilog="examples:\n  machineid ctl nodes ls\n  machineid ctl nodes ls --format json")
    resources.listing(nls, "node")
    unlock = nodes.add_parser("unlock", help="unlock a node locked because its identity or key pair was copied",
                              epilog="examples:\n  machineid ctl nodes unlock web1\n"
                                     "  machineid ctl tokens add --type=node --node-name=web1   # then join again")
    unlock.add_argument("name")
    format_flag(unlock, OUTPUTS)
    unlock.set_defaults(func=cmd_nodes_unlock)
    resources.deleting(nodes.add_parser("rm", help="remove a node (bots stop listing it; its host certificate stays "
                                                   "valid until it expires)",
                                        epilog="example:\n  machineid ctl nodes rm web1"), "node")


def cmd_nodes_add(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    node = Node(metadata=Metadata(name=args.name, labels=parse_labels(args.labels)), spec=NodeSpec(addr=args.addr))
    codec.validate(node)
    ttl = parse_ttl(args.ttl, "--ttl")
    writable_file(args.out, "--out")
    key = ed25519.Ed25519PrivateKey.generate()
    host = args.addr.rpartition(":")[0].strip("[]")
    with connect(args) as client:
        cluster = client.ping().cluster_name
        principals = list(dict.fromkeys([args.name, f"{args.name}.{cluster}", host]))
        existing = exists(client, node)
        if isinstance(existing, Node) and not args.force:
            raise AlreadyExistsError(f'node "{args.name}" is already registered (at {existing.spec.addr}, labels '
                                     f"{format_labels(existing.metadata.labels) or 'none'}); pass --force to "
                                     "replace it")
        cert = client.sign_host(certs.ssh_public_key_line(key.public_key()), principals, ttl)
        user_ca_text = "".join(ca.public_data.strip() + "\n" for ca in client.export_cas("user"))
        stored = client.upsert(node)
    prefix: Path = args.out
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    write_private(prefix, private)
    write_private(prefix.with_name(prefix.name + ".pub"), certs.ssh_public_key_line(key.public_key()) + "\n", 0o644)
    write_private(prefix.with_name(prefix.name + "-cert.pub"), cert.strip() + "\n", 0o644)
    user_ca = prefix.with_name(prefix.name + "-user_ca.pub")
    write_private(user_ca, user_ca_text, 0o644)
    command = setup_command(args.name, node.metadata.labels, prefix, user_ca)
    local = local_problems()
    emit(args, f'node "{args.name}" registered at {args.addr} (revision {stored.metadata.revision}); host key '
               f"{prefix}, certificate {prefix}-cert.pub (principals {', '.join(principals)}), user CA {user_ca}\n\n"
               "Copy those files to the node (the same paths), and there, as root:\n\n"
               f"  {command}\n\nIt installs the principals helper that enforces the roles' node_labels at login, "
               "checks every path as sshd will, and reloads sshd." +
               ("\n\nIf this machine is the node, fix this first (sshd would refuse the helper):\n" +
                "\n".join(f"  {p}" for p in local) if local else ""),
         {"kind": "node", "name": args.name, "action": "created" if existing is None else "updated",
           "revision": stored.metadata.revision, "addr": args.addr, "host_key": str(prefix),
           "host_certificate": f"{prefix}-cert.pub", "user_ca": str(user_ca), "principals": principals,
           "setup_command": command, "local_problems": [str(p) for p in local]})
    return 0


def setup_command(name: str, labels: dict[str, str], prefix: Path, user_ca: Path) -> str:
    """The node's side of `nodes add`: static mode (the node's labels as registered) with the files it wrote."""
    return shlex.join(["machineid", "node", "setup", "--name", name, "--labels", format_labels(labels),
                       "--host-key", str(prefix), "--user-ca", str(user_ca)])


def local_problems() -> list[object]:
    """What `node setup` would refuse on this machine before writing anything (the interpreter, the directories
    the helper and the node's state go into): worth saying when the admin runs this on the node itself."""
    from machineid.node.layout import Layout
    from machineid.node.setup import Options, preflight
    from machineid.node.sshd_paths import Account

    try:
        account = Account.lookup("nobody")
    except KeyError:
        account = None
    layout = Layout(Path(os.environ.get("MACHINEID_NODE_ROOT") or "/"))
    return list(preflight(Options(layout=layout), account))


def cmd_nodes_unlock(args: argparse.Namespace) -> int:
    with connect(args) as client:
        out = client.unlock_node(args.name)
    nxt = f"machineid ctl tokens add --type=node --node-name={args.name}"
    emit(args, f'node "{args.name}" has been unlocked. Its existing identity can no longer renew or sync (whoever '
               "copied it is shut out too): join the node again (its iam or bound_keypair token, or a new token "
               f"from\n\n  {nxt}",
         {"kind": "node", "name": args.name, "action": "unlocked", "revision": out.metadata.revision, "next": nxt})
    return 0
