"""`machineid node setup`: the command line of machineid.node.setup (flags, their checks, and which mode).

Static mode (`--labels`) is for a node without the agent: its labels go into the state file the helper reads. Join
mode (`--auth-server`, `--ca-pin`, `--name`, `--join-method`, `--token`) writes the node agent's settings for
`machineid node start`. The user CA comes from `--user-ca FILE` (what `ctl nodes add --out PREFIX` writes as
PREFIX-user_ca.pub, or `ctl auth export --type=user`): setup itself never talks to the cluster.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from machineid.model.errors import ValidationError

EXAMPLES = """\
examples:
  on a node without the agent, as root, with the files `ctl nodes add web1 ... --out web1/host_key` wrote:
    machineid node setup --labels env=prod --name web1 --host-key web1/host_key --user-ca web1/host_key-user_ca.pub
  see every file it would write, change nothing:
    machineid node setup --labels env=prod --user-ca user_ca.pub --dry-run
  a node the agent keeps up to date (`node start` joins with these settings):
    machineid node setup --auth-server auth.example.com:3025 --ca-pin sha256:... --name web1 \\
      --join-method token --token /root/web1.token --user-ca user_ca.pub
  an image being built (paths as the node will see them, files under ./rootfs):
    machineid node setup --labels env=prod --user-ca user_ca.pub --dest-dir ./rootfs
"""
JOIN_FLAGS = ("auth_server", "ca_pin", "token")
# Paths go unquoted into sshd_config, where '%' expands and whitespace separates, and into the helper's #! line.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*")


def add_parser(nsub: Any) -> None:
    p = nsub.add_parser("setup", help="set this node up to trust the cluster and enforce node labels (as root)",
                        description="Install the principals helper, the user CA, an empty revocation list, the "
                                    "node's labels (--labels) or the node agent's settings (join flags), and the "
                                    "sshd drop-in; check every path as sshd will, `sshd -t`, then reload sshd. "
                                    "Idempotent.", epilog=EXAMPLES)
    static = p.add_argument_group("static mode (a node without the agent)")
    static.add_argument("--labels", help="this node's labels, key=value,... (as registered with `ctl nodes add`)")
    join = p.add_argument_group("join mode (the node agent, `machineid node start`, keeps labels and certificates "
                                "fresh)")
    join.add_argument("--auth-server", help="the cluster, HOST:PORT")
    join.add_argument("--ca-pin", action="append", help="the cluster CA's pin, sha256:... (repeatable)")
    join.add_argument("--join-method", default="token", help="token (default), iam or bound_keypair")
    join.add_argument("--token", help="the join token or a file holding it (token); the token's name (iam, "
                                      "bound_keypair). Written to a root-only file, never printed")
    p.add_argument("--name", default="", help="the node's name in the cluster (required in join mode)")
    p.add_argument("--user-ca", type=Path, help="the cluster's user CA public key (`ctl nodes add` writes it as "
                                                "PREFIX-user_ca.pub; or `ctl auth export --type=user`)")
    p.add_argument("--host-key", type=Path, help="the host key PREFIX `ctl nodes add --out PREFIX` wrote (with "
                                                 "PREFIX-cert.pub); default: keep the node's, or generate one")
    p.add_argument("--root", type=Path, help="the filesystem root the node's files go under (default "
                                             "$MACHINEID_NODE_ROOT, else /)")
    p.add_argument("--dest-dir", type=Path, help="write the files under this directory (an image being built); "
                                                 "their contents name the paths under --root")
    p.add_argument("--run-as", default="nobody", help="the user sshd runs the helper as (default nobody)")
    p.add_argument("--python", type=Path, default=Path("/usr/bin/python3"),
                   help="the root-owned interpreter in the helper's #! line (default /usr/bin/python3)")
    p.add_argument("--sshd-config", type=Path, help="the main sshd_config (default ROOT/etc/ssh/sshd_config)")
    p.add_argument("--sshd-pid-file", type=Path, help="sshd's pid file, for the reload (default ROOT/run/sshd.pid)")
    p.add_argument("--no-reload", action="store_true", help="do not signal sshd")
    p.add_argument("--dry-run", action="store_true", help="print every file it would write; change nothing")
    join.add_argument("--join", action="store_true", help="join the cluster and fetch the host certificate, labels "
                      "and user CA now (one `node start --oneshot`), before sshd is reloaded")
    p.set_defaults(func=run_setup)


def _plain_path(value: Path, flag: str) -> Path:
    if not _PLAIN_PATH.fullmatch(str(value)):
        raise ValidationError(f"{flag} {str(value)!r}: use an absolute path of letters, digits and . _ / @ + - (it "
                              "goes unquoted into sshd_config)")
    return value


def _user_ca(path: Path) -> str:
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        text = path.read_text()
    except OSError as e:
        raise ValidationError(f"--user-ca {path}: {e.strerror}") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for n, line in enumerate(lines, 1):
        try:
            load_ssh_public_key(line.encode())
        except (ValueError, TypeError):
            raise ValidationError(f"--user-ca {path}: line {n} is not an OpenSSH public key (use what `machineid "
                                  "ctl auth export --type=user` prints)") from None
    if not lines:
        raise ValidationError(f"--user-ca {path}: holds no key (use what `machineid ctl auth export --type=user` "
                              "prints)")
    return "\n".join(lines) + "\n"


def _join(args: argparse.Namespace) -> Any:
    from machineid.agent.config import PIN
    from machineid.model import validators as v
    from machineid.model.resources import NODE_JOIN_METHODS
    from machineid.node.setup import Join

    missing = [f"--{f}" for f in ("name", "auth_server", "ca_pin", "token") if not getattr(args, f)]
    if missing:
        raise ValidationError(f"join mode needs {', '.join(f.replace('_', '-') for f in missing)}")
    problems = [f"--name: {e}" for e in [v.RESOURCE_NAME.check(args.name)] if e]
    host, _, port = args.auth_server.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"--auth-server {args.auth_server!r}: write HOST:PORT, e.g. auth.example.com:3025")
    problems += [f"--ca-pin: {e}" for pin in args.ca_pin for e in [PIN.check(pin)] if e]
    if args.join_method not in NODE_JOIN_METHODS:
        problems.append(f"--join-method {args.join_method!r}: a node joins with {', '.join(NODE_JOIN_METHODS)}")
    if problems:
        raise ValidationError("; ".join(problems))
    token = args.token
    if args.join_method == "token" and os.path.isfile(token):
        token = Path(token).read_text().strip()
        if not token:
            raise ValidationError(f"--token {args.token}: the file is empty")
    if not token or any(c.isspace() for c in token):
        raise ValidationError("--token: the token is empty or contains whitespace")  # never echo a secret
    return Join(args.name, args.auth_server, list(args.ca_pin), args.join_method, token)


def run_setup(args: argparse.Namespace) -> int:
    from machineid.cli.labels import parse_labels
    from machineid.node.layout import Layout
    from machineid.node.setup import Options, setup

    join_mode = any(getattr(args, f) for f in JOIN_FLAGS)
    if join_mode and args.labels is not None:
        raise ValidationError("--labels is for a node without the agent; in join mode the node's labels come from "
                              "its record in the cluster (set them there)")
    if args.join and not join_mode:
        raise ValidationError("--join needs the join flags (--auth-server, --ca-pin, --name, --token)")
    if not join_mode and args.labels is None:
        raise ValidationError("pass --labels for a node without the agent, or the join flags (--auth-server, "
                              "--ca-pin, --name, --token) for one the node agent keeps up to date")
    if not join_mode and args.name:
        from machineid.model import validators as v

        if problem := v.RESOURCE_NAME.check(args.name):
            raise ValidationError(f"--name: {problem}")
    root = _plain_path(args.root or Path(os.environ.get("MACHINEID_NODE_ROOT") or "/"), "--root")
    dest = args.dest_dir.resolve() if args.dest_dir else None
    opts = Options(
        layout=Layout(root, dest),
        labels=parse_labels(args.labels, "--labels") if args.labels is not None else None,
        name=args.name,
        join=_join(args) if join_mode else None,
        user_ca=_user_ca(args.user_ca) if args.user_ca else None,
        host_key=args.host_key,
        run_as=args.run_as,
        python=_plain_path(args.python, "--python"),
        sshd_config=_plain_path(args.sshd_config.absolute(), "--sshd-config") if args.sshd_config else None,
        sshd_pid_file=args.sshd_pid_file.absolute() if args.sshd_pid_file else None,
        reload=not args.no_reload,
        dry_run=args.dry_run,
        join_now=args.join and not args.dry_run,
    )
    return setup(opts, lambda line: print(line, flush=True))
