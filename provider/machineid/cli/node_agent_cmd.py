"""`machineid node start`: the node agent (joins, renews, keeps the host certificate and the node's labels fresh,
heartbeats). Its own module, so `node_cmd` (setup, principals) only adds its parser."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from machineid.cli import logs
from machineid.model import validators as v
from machineid.model.errors import ValidationError

START_EXAMPLES = """\
examples:
  machineid node start
  machineid node start --oneshot
  machineid node start --root /var/lib/machineid-image --heartbeat-interval 30s

It reads ROOT/etc/machineid/node.yaml, which `node setup` writes, and runs as root.

exit codes: 0 after --oneshot, 3 a bad flag or config, 6 the cluster cannot be reached (--oneshot; otherwise it
  retries), 1 the cluster refuses (a spent token, a locked node)
"""


def default_root() -> str:
    return os.environ.get("MACHINEID_NODE_ROOT") or "/"


def add_start_parser(nsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    start = nsub.add_parser("start", help="run the node agent: join, renew the host certificate, heartbeat",
                            description="Join the cluster (once), then keep the node's host certificate, user CA and "
                                        "labels fresh and report in every heartbeat interval. sshd is reloaded "
                                        "(SIGHUP: sessions stay) only when the host certificate changed.",
                            epilog=START_EXAMPLES)
    start.add_argument("--root", default=default_root(), type=Path,
                       help="the filesystem root the node's files live under (env MACHINEID_NODE_ROOT)")
    start.add_argument("--oneshot", action="store_true", help="sync once and exit")
    start.add_argument("--heartbeat-interval", default="",
                       help="how often to sync (default: the config's heartbeat_interval, 60s)")
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    start.add_argument("--log-format", default="json", choices=["json", "text"])
    start.set_defaults(func=run_start)


def run_start(args: argparse.Namespace) -> int:
    from machineid.node import agent
    from machineid.node.layout import Layout

    logs.setup(args.log_level, args.log_format)
    interval = None
    if args.heartbeat_interval:
        reason = v.duration(min_seconds=1, max_seconds=86400).check(args.heartbeat_interval)
        if reason:
            raise ValidationError(f"--heartbeat-interval: {reason}")
        interval = v.parse_duration(args.heartbeat_interval)
    layout = Layout(root=args.root)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = agent.NodeAgent(layout, agent.load(layout), stop=stop, heartbeat_interval=interval)
    if args.oneshot:
        node.sync_once()
    else:
        node.run()
    return 0
