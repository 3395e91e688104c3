"""`machineid bot start`: the bot agent (the `tbot start` analogue)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from machineid.cli import logs
from machineid.model import codec
from machineid.model.errors import ValidationError, render_path
from machineid.model.resources import JOIN_METHODS

START_EXAMPLES = """\
examples:
  machineid bot start --data-dir /var/lib/machineid/bot --destination-dir /opt/machine-id \\
      --token /etc/machineid/token --ca-pin sha256:... --auth-server HOST:3025
  machineid bot start --config /etc/machineid/bot.yaml
  machineid bot start --data-dir ./bot --destination-dir ./id --join-method bound_keypair --token robot-key \\
      --ca-pin sha256:... --auth-server HOST:3025 --oneshot
  machineid bot start --data-dir ./bot --destination-dir ./id --join-method github --token deploy-gh \\
      --ca-pin sha256:... --auth-server HOST:3025 --oneshot

A github join runs in a job with `permissions: id-token: write`; gitlab reads the job's id_tokens variable.

exit codes: 0 after --oneshot, 3 a bad flag, config or directory, 6 the cluster cannot be reached on first
  contact, 1 the cluster refuses (a spent token, a locked bot)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bot = sub.add_parser("bot", help="run the bot agent on a machine")
    bsub = bot.add_subparsers(dest="bot_cmd", required=True, metavar="COMMAND")
    start = bsub.add_parser("start", help="join the cluster and keep fresh certificates in a directory",
                            epilog=START_EXAMPLES)
    start.add_argument("--config", type=Path, help="agent config YAML (as the Pulumi provider renders it)")
    start.add_argument("--data-dir", help="where the agent keeps its renewable identity")
    start.add_argument("--destination-dir", help="where the short-lived certificates are written")
    start.add_argument("--token", help="the join token, or the path of a file holding it")
    start.add_argument("--join-method", choices=list(JOIN_METHODS),
                       help="token (default), iam, bound_keypair (sign with the key `bot keypair create` made), or "
                            "with the platform's ID token: github, gitlab, kubernetes, oidc")
    id_token_flags(start)
    start.add_argument("--registration-secret",
                       help="bound_keypair: the token's one-time registration secret, or the path of a file holding "
                            "it (needed only until the first join succeeds)")
    start.add_argument("--ca-pin", action="append", help="CA pin printed by `machineid ctl bots add` (repeatable)")
    start.add_argument("--auth-server", help="host:port of the cluster")
    start.add_argument("--certificate-ttl", help="lifetime of issued certificates (default 1h)")
    start.add_argument("--renewal-interval", help="how often to renew (default 20m)")
    start.add_argument("--oneshot", action="store_true", default=None, help="write the certificates once and exit")
    start.add_argument("--destination-checks", choices=["strict", "warn", "off"],
                       help="strict (default): refuse to start when the destination is, or is under, a symlink, is "
                            "writable by other users (or under a directory that is, without the sticky bit; /tmp "
                            "is fine), or is owned by a user other than the agent's or root: whoever controls it "
                            "can swap the certificates or redirect the private key (tbot also refuses insecure "
                            "symlinks by default); warn: log a warning and go on; off: no checks")
    start.add_argument("--diag-listen", default="", metavar="HOST:PORT",
                       help="serve /metrics (Prometheus), /healthz and /readyz there while the agent runs (not with "
                            "--oneshot); ready once the destinations hold fresh certificates, unhealthy when renewal "
                            "keeps failing")
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="json", choices=["json", "text"])
    start.set_defaults(func=run_start)

    keypair = bsub.add_parser("keypair", help="the bot's key pair for bound_keypair joins")
    ksub = keypair.add_subparsers(dest="keypair_cmd", required=True, metavar="COMMAND")
    create = ksub.add_parser("create", help="create the bot's key pair in its data dir and print the public key (to "
                                            "put in the token's initial_public_key)")
    create.epilog = "example:\n  machineid bot keypair create --data-dir /var/lib/machineid/bot"
    create.add_argument("--data-dir", required=True, help="the agent's data dir (the key is kept there, 0600)")
    create.add_argument("--force", action="store_true", help="replace an existing key")
    create.set_defaults(func=run_keypair_create)
    show = ksub.add_parser("show", help="print the public key of the key pair in the data dir again",
                           epilog="example:\n  machineid bot keypair show --data-dir /var/lib/machineid/bot")
    show.add_argument("--data-dir", required=True, help="the agent's data dir")
    show.set_defaults(func=run_keypair_show)


def id_token_flags(p: argparse.ArgumentParser) -> None:
    """Where a delegated join (github, gitlab, kubernetes, oidc) finds the platform's ID token: the agent, ctl and
    review take the same flags."""
    p.add_argument("--audience", default="", help="github, gitlab, kubernetes, oidc: the audience the ID token "
                                                  "carries (what the token's block asks for; default the cluster's "
                                                  "name)")
    p.add_argument("--id-token-file", default="", metavar="FILE",
                   help="read the platform's ID token from this file (env MACHINEID_ID_TOKEN_FILE); otherwise "
                        "github asks the runner's token endpoint, gitlab and oidc read $MACHINEID_ID_TOKEN, "
                        "kubernetes the projected token")
    p.add_argument("--id-token-env", default="", metavar="VAR",
                   help="gitlab, oidc: the variable that holds the ID token (the name of the job's id_tokens "
                        "entry; default MACHINEID_ID_TOKEN)")
    p.add_argument("--kubernetes-token-path", default="", metavar="FILE",
                   help="kubernetes: the projected service-account token (default "
                        "/var/run/secrets/tokens/machineid)")


def build_config(args: argparse.Namespace) -> object:
    from machineid.agent import config as agent_config

    if args.config:
        try:
            text = Path(args.config).read_text()
        except OSError as e:
            raise ValidationError(f"--config: cannot read {args.config}: {e.strerror}") from None
        try:
            cfg = agent_config.load(text, str(args.config))
        except ValidationError as e:
            raise ValidationError(_config_problems(e, {}, str(args.config))) from None
    else:
        cfg = agent_config.AgentConfig()
    if args.auth_server:
        cfg.auth_server = args.auth_server
    if args.token:
        cfg.onboarding.token = args.token
    if args.join_method:
        cfg.onboarding.join_method = args.join_method
    if args.registration_secret:
        cfg.onboarding.registration_secret = args.registration_secret
    for name in ("audience", "id_token_file", "id_token_env", "kubernetes_token_path"):
        if getattr(args, name):
            setattr(cfg.onboarding, name, getattr(args, name))
    if args.ca_pin:
        cfg.onboarding.ca_pins = list(args.ca_pin)
    if args.data_dir:
        cfg.storage.directory = args.data_dir
    if args.destination_dir:
        cfg.destinations = [agent_config.Destination(directory=args.destination_dir)]
    if args.certificate_ttl:
        cfg.certificate_ttl = args.certificate_ttl
    if args.renewal_interval:
        cfg.renewal_interval = args.renewal_interval
    if args.oneshot:
        cfg.oneshot = True
    if args.destination_checks:
        cfg.destination_checks = args.destination_checks
    flags = {"auth_server": "--auth-server", "onboarding.token": "--token", "onboarding.ca_pins": "--ca-pin",
             "onboarding.join_method": "--join-method", "onboarding.registration_secret": "--registration-secret",
             "storage.directory": "--data-dir", "destinations": "--destination-dir",
             "certificate_ttl": "--certificate-ttl", "renewal_interval": "--renewal-interval",
             "destination_checks": "--destination-checks", "onboarding.audience": "--audience",
             "onboarding.id_token_file": "--id-token-file", "onboarding.id_token_env": "--id-token-env",
             "onboarding.kubernetes_token_path": "--kubernetes-token-path"}
    try:
        codec.validate(cfg)
    except ValidationError as e:
        raise ValidationError(_config_problems(e, flags, str(args.config or ""))) from None
    return cfg


def _config_problems(e: ValidationError, flags: dict[str, str], source: str) -> str:
    """One problem per line, the file apart from the field (FILE: field: reason), each with its one hint."""
    lines = []
    for v in e.violations:
        path = v.path[1:] if source and v.path and v.path[0] == source else v.path
        where = render_path(path)
        flag = flags.get(".".join(str(p) for p in path if not isinstance(p, int)))
        prefix = f"{source}: " if source and path != v.path else ""
        lines.append(f"{prefix}{where}: {v.reason}" + (f" (flag {flag})" if flag else ""))
    return ("\n" if len(lines) > 1 else "").join(["", *lines] if len(lines) > 1 else lines)


def run_start(args: argparse.Namespace) -> int:
    from machineid.agent.bot import BotAgent
    from machineid.agent.config import AgentConfig

    logs.setup(args.log_level, args.log_format)
    cfg = build_config(args)
    assert isinstance(cfg, AgentConfig)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent = BotAgent(cfg, stop)
    if cfg.oneshot:
        agent.oneshot()
        return 0
    diag_server = None
    if args.diag_listen:
        from machineid.agent.diag import Diagnostics, DiagServer

        agent.diag = Diagnostics(agent.destinations)
        diag_server = DiagServer(args.diag_listen, agent.diag)
        logging.getLogger("machineid.agent").info("diagnostics on http://%s (/metrics, /healthz, /readyz)",
                                                  diag_server.address)
    try:
        agent.run()
    finally:
        if diag_server is not None:
            diag_server.close()
    return 0


def _comment() -> str:
    import socket

    return f"machineid-bot@{socket.gethostname()}"


def run_keypair_create(args: argparse.Namespace) -> int:
    from machineid.agent import keypair

    print(keypair.create(Path(args.data_dir), force=args.force, comment=_comment()))
    return 0


def run_keypair_show(args: argparse.Namespace) -> int:
    from machineid.agent import keypair

    print(keypair.show(Path(args.data_dir), comment=_comment()))
    return 0
