"""`machineid server start`: run the cluster in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
from datetime import timedelta
from pathlib import Path
from types import FrameType

from machineid.cli import logs

EXAMPLES = """\
examples:
  machineid server start --data-dir ./cluster
  machineid server start --data-dir /var/lib/machineid --listen 0.0.0.0:3025 --cluster-name example.com
  machineid server start --data-dir /var/lib/machineid --storage postgresql://machineid@db:5432/machineid
  machineid server start --data-dir ./cluster --workers 4
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    server = sub.add_parser("server", help="run the cluster (auth service)")
    ssub = server.add_subparsers(dest="server_cmd", required=True, metavar="COMMAND")
    start = ssub.add_parser("start", help="start the cluster in the foreground", epilog=EXAMPLES)
    start.add_argument("--data-dir", required=True, type=Path, help="where the database and identity live")
    start.add_argument("--listen", default="127.0.0.1:3025", help="host:port to listen on (port 0 picks one)")
    start.add_argument("--cluster-name", default="", help="cluster name (default: derived from the host name)")
    start.add_argument("--iam-sts-endpoint", action="append", default=[], metavar="URL",
                       help="also accept this STS endpoint for IAM joins (repeatable; e.g. a local STS for tests)")
    start.add_argument("--storage", default="", metavar="URL",
                       help="sqlite (default: DATA_DIR/cluster.db) or postgresql://USER@HOST:PORT/DB to share state "
                            "between several servers")
    start.add_argument("--audit-retention", default="90d", metavar="DURATION", type=retention,
                       help="how long audit records are kept, e.g. 90d, 720h, or 0 to keep them forever (default "
                            "90d); older ones, expired join tokens and expired IAM challenges are deleted every 10 "
                            "minutes, in batches")
    start.add_argument("--max-connections-per-source", type=positive, default=256, metavar="N",
                       help="connections one client address may hold open at once (default 256; raise it for many "
                            "agents behind one NAT address)")
    start.add_argument("--join-rate-per-source", type=positive, default=50, metavar="N",
                       help="new anonymous connections (joins, ping) per second from one client address, in bursts "
                            "of up to 200 (default 50); renewals are not limited")
    start.add_argument("--ca-key-file", type=Path, default=None, metavar="FILE",
                       help="the key that seals the CA keys in the database (default DATA_DIR/ca.key, created 0600 "
                            "with the cluster); servers sharing a database need the same key. MACHINEID_CA_KEY "
                            "(base64) in the environment is used instead when set")
    start.add_argument("--ca-key-command", default="", metavar="CMD",
                       help="a command that prints the sealing key (base64), e.g. a KMS or secrets-manager CLI; "
                            "used instead of the file and the environment")
    start.add_argument("--instance-retention", default="7d", metavar="DURATION", type=retention,
                       help="how long a bot instance's record is kept after it was last seen (default 7d), so a "
                            "vanished machine stays visible in `ctl bots instances ls`; 0 keeps them)")
    start.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                       help="serve Prometheus metrics at http://HOST:PORT/metrics (joins and renewals by method and "
                            "result, call latency, limit refusals, store latency, audit backlog, CA expiry, live "
                            "instances); keep it on loopback or a private network")
    start.add_argument("--workers", type=positive, default=None, metavar="N",
                       help="processes serving calls (default: the number of cores this process may use, up to "
                            "16); one "
                            "process in front owns the port, spreads connections over them and keeps every "
                            "per-address limit; they share the store")
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="json", choices=["json", "text"])
    start.set_defaults(func=run_start)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'"{text}" is not a positive whole number')
    return int(text)


def retention(text: str) -> timedelta | None:
    """90d, 720h, 30m... or 0 for forever."""
    from machineid.model import validators

    try:
        value = (timedelta(days=float(text[:-1])) if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit()
                 else validators.parse_duration(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (days are written like 90d; 0 keeps records forever)") from None
    if value < timedelta(0):
        raise argparse.ArgumentTypeError(f'"{text}" is negative; write a duration such as 90d, or 0 for forever')
    return value or None


def run_start(args: argparse.Namespace) -> int:
    from machineid.cluster.server import Server, ServerConfig, default_workers
    from machineid.cluster.worker import Stop

    logs.setup(args.log_level, args.log_format)
    server = Server(ServerConfig(data_dir=args.data_dir, listen=args.listen, cluster_name=args.cluster_name,
                                 iam_sts_endpoints=tuple(args.iam_sts_endpoint), storage=args.storage,
                                 audit_retention=args.audit_retention,
                                 max_connections_per_source=args.max_connections_per_source,
                                 join_rate_per_source=args.join_rate_per_source, ca_key_file=args.ca_key_file,
                                 ca_key_command=args.ca_key_command, metrics_listen=args.metrics_listen,
                                 instance_retention=args.instance_retention or timedelta(days=36500),
                                 workers=args.workers or default_workers(), log_level=args.log_level,
                                 log_format=args.log_format))

    stop = Stop()  # a signal during start-up is answered once the server has started: it stops right away

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    while not stop.wait(3600):
        pass
    server.stop()
    return 0
