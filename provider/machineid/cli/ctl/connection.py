"""How `ctl` (and `review`) find the cluster: --auth-server and --identity, their environment variables, or the
server's data dir on its own host."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from machineid.api import id_tokens, joining
from machineid.api.client import Client
from machineid.api.identity import Identity
from machineid.model.errors import TransportError, UnauthenticatedError, ValidationError


def connection_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    """On `ctl` itself with their defaults, and on every ctl command with none, so they work on either side of
    the command (`ctl get roles --data-dir DIR`)."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    def add(flag: str, **kwargs: Any) -> None:
        if flag not in p._option_string_actions:  # a command's own flag of that name wins (tokens add --join-method)
            p.add_argument(flag, **kwargs)

    p.add_argument("--auth-server", default=default(os.environ.get("MACHINEID_AUTH_SERVER", "")), metavar="HOST:PORT",
                   help="the cluster's address (env MACHINEID_AUTH_SERVER)")
    p.add_argument("--identity", default=default(os.environ.get("MACHINEID_IDENTITY", "")), metavar="FILE",
                   help="identity file (env MACHINEID_IDENTITY)")
    p.add_argument("--data-dir", type=Path, default=default(os.environ.get("MACHINEID_DATA_DIR") or None),
                   metavar="DIR", help="the server's data dir, on the server's host: address and admin identity "
                                       "from there (env MACHINEID_DATA_DIR)")
    # Instead of an identity file: join for this run, in memory (CI with no stored secret).
    add("--join-method", default=default(os.environ.get("MACHINEID_JOIN_METHOD", "")),
                   choices=["", *joining.METHODS],
                   metavar="METHOD", help="join for this run instead of --identity: github, gitlab, kubernetes, "
                                          "oidc (the platform's ID token) or iam (env MACHINEID_JOIN_METHOD); the "
                                          "identity stays in memory")
    p.add_argument("--join-token", default=default(os.environ.get("MACHINEID_JOIN_TOKEN", "")), metavar="NAME",
                   help="with --join-method: the join token's name (not a secret; env MACHINEID_JOIN_TOKEN)")
    p.add_argument("--ca-pin", default=default(os.environ.get("MACHINEID_CA_PIN", "")), metavar="PIN",
                   help="with --join-method: the cluster's CA pin, checked before anything is sent (env "
                        "MACHINEID_CA_PIN)")
    for flag, env, text in (
            ("--audience", "MACHINEID_AUDIENCE", "the audience the ID token carries (default the cluster's name)"),
            ("--id-token-file", "MACHINEID_ID_TOKEN_FILE", "read the platform's ID token from this file"),
            ("--id-token-env", "MACHINEID_ID_TOKEN_ENV", "gitlab, oidc: the variable holding the ID token (default "
                                                         "MACHINEID_ID_TOKEN)"),
            ("--kubernetes-token-path", "MACHINEID_KUBERNETES_TOKEN_PATH", "kubernetes: the projected token")):
        p.add_argument(flag, default=default(os.environ.get(env, "")), help=f"with --join-method: {text} (env {env})")


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
    method = getattr(args, "join_method", "")
    if method:
        if identity_path:
            raise ValidationError("--join-method: pass either --identity or --join-method, not both")
        if not address:
            raise TransportError("--join-method: pass --auth-server HOST:PORT (or set MACHINEID_AUTH_SERVER)")
        source = id_tokens.IDTokenSource.from_environment(
            method, args.audience, args.id_token_file, args.id_token_env, args.kubernetes_token_path) \
            if method != "iam" else None
        return Client(address, joining.join(address, args.ca_pin, method, args.join_token, source))
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
