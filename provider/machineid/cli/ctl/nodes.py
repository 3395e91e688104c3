"""`ctl nodes`: add (register a node, write its host key and certificate, print its sshd_config lines), ls, rm."""

from __future__ import annotations

import argparse
from pathlib import Path

from machineid.api import certs
from machineid.api.identity import write_private
from machineid.cli.ctl import resources
from machineid.cli.ctl.common import OUTPUTS, emit, exists, format_flag, parse_ttl, writable_file
from machineid.cli.ctl.connection import connect
from machineid.cli.labels import format_labels, parse_labels
from machineid.cli.node_cmd import sshd_config_lines
from machineid.cli.parser import subcommands
from machineid.model import codec
from machineid.model.errors import AlreadyExistsError
from machineid.model.resources import Metadata, Node, NodeSpec


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
        stored = client.upsert(node)
    prefix: Path = args.out
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    write_private(prefix, private)
    write_private(prefix.with_name(prefix.name + ".pub"), certs.ssh_public_key_line(key.public_key()) + "\n", 0o644)
    write_private(prefix.with_name(prefix.name + "-cert.pub"), cert.strip() + "\n", 0o644)
    lines = sshd_config_lines(prefix, node.metadata.labels)
    emit(args, f'node "{args.name}" registered at {args.addr} (revision {stored.metadata.revision}); host key '
               f"{prefix}, certificate {prefix}-cert.pub (principals {', '.join(principals)})\n\nIn the node's "
               "sshd_config (the user CA from `machineid ctl auth export --type=user`):\n\n"
               + "\n".join(f"  {line}" for line in lines),
         {"kind": "node", "name": args.name, "action": "created" if existing is None else "updated",
           "revision": stored.metadata.revision, "addr": args.addr, "host_key": str(prefix),
           "host_certificate": f"{prefix}-cert.pub", "principals": principals, "sshd_config": lines})
    return 0


def cmd_nodes_unlock(args: argparse.Namespace) -> int:
    with connect(args) as client:
        out = client.unlock_node(args.name)
    nxt = f"machineid ctl tokens add --type=node --node-name={args.name}"
    emit(args, f'node "{args.name}" has been unlocked. Its existing identity can no longer renew or sync (whoever '
               "copied it is shut out too): join the node again (its iam or bound_keypair token, or a new token "
               f"from\n\n  {nxt}",
         {"kind": "node", "name": args.name, "action": "unlocked", "revision": out.metadata.revision, "next": nxt})
    return 0
