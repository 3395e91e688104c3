"""`ctl auth`: export (the CAs' public keys in the forms sshd and known_hosts take), sign (a user's identity file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from machineid.api import certs
from machineid.api.client import identity_from_certs
from machineid.api.identity import write_private
from machineid.cli.ctl.common import OUTPUTS, emit, format_flag, parse_ttl, writable_file
from machineid.cli.ctl.connection import connect
from machineid.cli.parser import subcommands
from machineid.model import codec


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    auth = subcommands(csub.add_parser("auth", help="certificate authorities and identities"), "auth_cmd")
    export = auth.add_parser("export", help="print CA public keys/certificates",
                             epilog="examples:\n  machineid ctl auth export --type=user > /etc/ssh/user_ca.pub\n"
                                    "  machineid ctl auth export --type=host >> ~/.ssh/known_hosts")
    export.add_argument("--type", default="", choices=["", "user", "host", "tls"],
                        help="one CA (default: all): user (TrustedUserCAKeys form), host (known_hosts form), tls")
    format_flag(export, OUTPUTS)
    export.set_defaults(func=cmd_auth_export)
    sign = auth.add_parser("sign", help="issue an identity file for a user",
                           epilog="examples:\n  machineid ctl auth sign --user alice --out ./alice.identity --ttl 8h\n"
                                  "  machineid ctl --identity ./alice.identity --auth-server HOST:3025 status")
    sign.add_argument("--user", required=True, help="the user the identity is for")
    sign.add_argument("--out", required=True, type=Path, help="the identity file to write (0600)")
    sign.add_argument("--ttl", default="1h", help="how long the certificates are valid")
    format_flag(sign, OUTPUTS)
    sign.set_defaults(func=cmd_auth_sign)


def cmd_auth_export(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cas = client.export_cas(args.type)
    if args.format == "json":
        emit(args, "", [{"type": ca.type, "cluster_name": ca.cluster_name, "public_data": ca.public_data,
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


def cmd_auth_sign(args: argparse.Namespace) -> int:
    ttl = parse_ttl(args.ttl, "--ttl")
    writable_file(args.out, "--out")
    key = certs.new_key()
    with connect(args) as client:
        out = client.sign_user(args.user, certs.public_key_pem(key.public_key()), ttl)
    ident = identity_from_certs(certs.private_key_pem(key), out)
    write_private(args.out, ident.dumps())
    emit(args, f"The identity of {args.user} has been written to {args.out} (valid until "
               f"{codec.format_time(ident.expires)})",
         {"user": args.user, "path": str(args.out), "expires": codec.format_time(ident.expires)})
    return 0
