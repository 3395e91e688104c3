"""`machineid node`: the commands that run on an OpenSSH node.

`node setup` (machineid.cli.node_setup_cmd) installs the self-contained principals helper that sshd runs at each
login. `node principals` is the old way, sshd's AuthorizedPrincipalsCommand run from the virtualenv: sshd refuses it
there (a home directory that `nobody` cannot enter, or a cache anyone may write) and every login fails. It stays for
one release as a deprecated alias, answering for the new certificates (principals `machineid:LOGIN`), and tells the
operator on stderr, at every call, to run `node setup` instead."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from machineid.cli import node_agent_cmd, node_setup_cmd

SSHD_USAGE = "AuthorizedPrincipalsCommand {exe} node principals --labels {labels} %u %t %k"
USAGE = "node principals [--labels LABELS] [--] LOGIN TYPE CERTIFICATE"
COMMAND = ["node", "principals"]
DEPRECATED = ("machineid node principals is deprecated and goes away in the next release: run `machineid node "
              "setup` on this node (it installs a helper sshd can run as nobody, without the virtualenv)")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("node", help="commands that run on an OpenSSH node",
                       description="Commands that run on an OpenSSH node that trusts the cluster.")
    nsub = p.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    node_setup_cmd.add_parser(nsub)
    node_agent_cmd.add_start_parser(nsub)
    pr = nsub.add_parser("principals", help="deprecated: run `node setup` (it installs sshd's principals helper)",
                         description="Deprecated: `machineid node setup` installs a helper sshd can run. Prints "
                                     "machineid:LOGIN if CERTIFICATE's roles grant LOGIN on a node with --labels "
                                     "(deny wins) and the certificate carries that principal; nothing otherwise. "
                                     "The last three arguments are always the login, the type and the "
                                     "certificate, whatever they look like (a login that starts with - is "
                                     "refused); only --labels may come before them.",
                         epilog="examples:\n  instead, as root on the node:\n"
                                "    machineid node setup --labels env=prod --user-ca user_ca.pub\n"
                                "  by hand, for a bot's certificate (prints machineid:root if it may log in as root "
                                "here):\n    machineid node principals --labels env=prod root "
                                "$(cut -d' ' -f1,2 /opt/machine-id/key-cert.pub)")
    pr.add_argument("--labels", default="", help="this node's labels, key=value,... (as registered)")
    pr.add_argument("login", help="the login asked for (%%u)")
    pr.add_argument("key_type", help="the certificate's type (%%t)")
    pr.add_argument("certificate", help="the certificate, base64 (%%k)")
    pr.set_defaults(func=run_principals)


def principals(login: str, key_type: str, certificate: str, labels: dict[str, str]) -> list[str]:
    """The principal to print: `machineid:LOGIN` (or, for a certificate issued before principals carried the
    prefix, the bare LOGIN it carries) when the roles grant LOGIN here."""
    from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

    from machineid.model.node_access import EXTENSION, NodeAccess
    from machineid.node.layout import PRINCIPAL_PREFIX

    cert = load_ssh_public_identity(f"{key_type} {certificate}".encode())
    if not isinstance(cert, SSHCertificate):
        return []
    raw = cert.extensions.get(EXTENSION.encode())
    if raw is None:
        return []  # issued by something that does not say where it may log in: nowhere on this node
    if login not in NodeAccess.decode(raw).logins_on(labels):
        return []
    return [p for p in (PRINCIPAL_PREFIX + login, login) if p.encode() in cert.valid_principals][:1]


def principals_main(argv: list[str]) -> int:
    """sshd's call, parsed by position: the last three arguments are %u %t %k and nothing else is read from them,
    so a login such as `-h` or `--help` is never taken for a flag (argparse would print its usage to stdout, which
    sshd reads as principals). Every problem goes to stderr with a non-zero exit; stdout gets only a granted login."""
    from machineid.cli import exit_codes

    print(DEPRECATED, file=sys.stderr)
    if len(argv) < 3:
        print(f"machineid node principals: refusing: expected the login, type and certificate last (%u %t %k); "
              f"the form is {USAGE}", file=sys.stderr)
        return exit_codes.USAGE
    *options, login, key_type, certificate = argv
    if options[-1:] == ["--"]:
        options.pop()
    labels = ""
    while options:
        flag = options.pop(0)
        if flag == "--labels" and options:
            labels = options.pop(0)
        elif flag.startswith("--labels="):
            labels = flag.partition("=")[2]
        else:
            print(f"machineid node principals: refusing: unexpected argument {flag!r}; the form is {USAGE}",
                  file=sys.stderr)
            return exit_codes.USAGE
    if login.startswith("-"):
        print(f"machineid node principals: refusing: the login {login!r} starts with '-'", file=sys.stderr)
        return exit_codes.INVALID
    return run_principals(argparse.Namespace(labels=labels, login=login, key_type=key_type, certificate=certificate))


def run_principals(args: argparse.Namespace) -> int:
    from machineid.cli.labels import parse_labels

    try:
        granted = principals(args.login, args.key_type, args.certificate, parse_labels(args.labels, "--labels"))
    except Exception as e:  # a malformed certificate or extension: no access, and say why in sshd's log
        print(f"machineid node principals: refusing: {e}", file=sys.stderr)
        return 0
    for p in granted:
        print(p)
    return 0
