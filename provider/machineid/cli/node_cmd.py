"""`machineid node principals`: sshd's AuthorizedPrincipalsCommand on a node, so a role's node_labels hold where
the login happens, not only in what the cluster lists.

sshd runs it for each user-certificate login with the login, the certificate's type and the certificate (%u %t %k)
and accepts the login only if it is printed (and among the certificate's principals). It prints the login when the
certificate's node-access extension grants it on a node with these labels; otherwise nothing. It needs no network
and no state: the labels are on its command line in the node's root-owned sshd_config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from machineid.agent.config import DEFAULT_AGENT_PATH
from machineid.cli import node_agent_cmd
from machineid.cli.labels import format_labels

SSHD_USAGE = "AuthorizedPrincipalsCommand {exe} node principals --labels {labels} %u %t %k"
USAGE = "node principals [--labels LABELS] [--] LOGIN TYPE CERTIFICATE"
COMMAND = ["node", "principals"]


def sshd_config_lines(host_key: Path, labels: dict[str, str], user_ca: str = "/etc/ssh/machineid_user_ca.pub",
                      executable: str = "", run_as: str = "nobody") -> list[str]:
    """What a node's sshd_config needs: the host key and certificate, the cluster's user CA, and the principals
    command that enforces node_labels at login (sshd wants it and its directories root-owned)."""
    exe = executable or (os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else "machineid")
    return [f"HostKey {host_key}", f"HostCertificate {host_key}-cert.pub", f"TrustedUserCAKeys {user_ca}",
            SSHD_USAGE.format(exe=exe, labels=format_labels(labels) or "none=none"),
            f"AuthorizedPrincipalsCommandUser {run_as}"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("node", help="commands that run on an OpenSSH node",
                       description="Commands that run on an OpenSSH node that trusts the cluster.")
    nsub = p.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    node_agent_cmd.add_start_parser(nsub)
    pr = nsub.add_parser("principals", help="sshd's AuthorizedPrincipalsCommand: the logins this node grants",
                         description="Print LOGIN if CERTIFICATE's roles grant it on a node with --labels (deny "
                                     "wins); print nothing otherwise. The last three arguments are always the "
                                     "login, the type and the certificate, whatever they look like (a login that "
                                     "starts with - is refused); only --labels may come before them.",
                         epilog="examples:\n  in sshd_config:\n    " +
                                SSHD_USAGE.format(exe=DEFAULT_AGENT_PATH, labels="env=prod") +
                                "\n  by hand, for a bot's certificate (prints root if it may log in as root here):\n"
                                "    machineid node principals --labels env=prod root "
                                "$(cut -d' ' -f1,2 /opt/machine-id/key-cert.pub)")
    pr.add_argument("--labels", default="", help="this node's labels, key=value,... (as registered)")
    pr.add_argument("login", help="the login asked for (%%u)")
    pr.add_argument("key_type", help="the certificate's type (%%t)")
    pr.add_argument("certificate", help="the certificate, base64 (%%k)")
    pr.set_defaults(func=run_principals)


def principals(login: str, key_type: str, certificate: str, labels: dict[str, str]) -> list[str]:
    from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

    from machineid.model.node_access import EXTENSION, NodeAccess

    cert = load_ssh_public_identity(f"{key_type} {certificate}".encode())
    if not isinstance(cert, SSHCertificate):
        return []
    raw = cert.extensions.get(EXTENSION.encode())
    if raw is None:
        return []  # issued by something that does not say where it may log in: nowhere on this node
    allowed = NodeAccess.decode(raw).logins_on(labels)
    return [login] if login in allowed and login.encode() in cert.valid_principals else []


def principals_main(argv: list[str]) -> int:
    """sshd's call, parsed by position: the last three arguments are %u %t %k and nothing else is read from them,
    so a login such as `-h` or `--help` is never taken for a flag (argparse would print its usage to stdout, which
    sshd reads as principals). Every problem goes to stderr with a non-zero exit; stdout gets only a granted login."""
    from machineid.cli import exit_codes

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
