"""`ctl bots instances ls|show`: the fleet of agents (tbot's `tctl bots instances`): which version, which host,
when last seen, healthy or not, with filters a CI job or an operator asks for."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from machineid.cli.ctl.common import OUTPUTS, format_flag, parse_ttl
from machineid.cli.ctl.connection import connect
from machineid.cli.fmt import render
from machineid.model import codec
from machineid.model.errors import ValidationError
from machineid.model.instances import select


def add_parsers(bots: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from machineid.cli.parser import subcommands

    inst = subcommands(bots.add_parser("instances", help="the bots' agents: version, host, last seen, health"),
                       "instances_cmd")
    ls = inst.add_parser("ls", help="list bot instances",
                         epilog="examples:\n  machineid ctl bots instances ls --bot deployer\n"
                                "  machineid ctl bots instances ls --not-seen-since 24h --format json\n"
                                "  machineid ctl bots instances ls --version-older-than 0.1.0 --unhealthy")
    ls.add_argument("--bot", default="", help="only this bot's instances")
    ls.add_argument("--version-older-than", default="", metavar="VERSION",
                    help="only agents older than this version (or that never reported one)")
    ls.add_argument("--not-seen-since", default="", metavar="DURATION",
                    help="only instances not seen (joined or renewed) within this long, e.g. 24h")
    ls.add_argument("--unhealthy", action="store_true", help="only instances whose last heartbeat reported a "
                                                              "destination it could not write")
    format_flag(ls, OUTPUTS)
    ls.set_defaults(func=cmd_ls)
    show = inst.add_parser("show", help="one instance in full", epilog="example:\n  machineid ctl bots instances "
                                                                       "show 0123456789abcdef0123456789abcdef")
    show.add_argument("instance_id")
    format_flag(show, ["yaml", "json"], default="yaml")
    show.set_defaults(func=cmd_show)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    secs = int((now - when).total_seconds())
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}m ago" if secs < 7200 else f"{secs // 3600}h ago"


def cmd_ls(args: argparse.Namespace) -> int:
    since = parse_ttl(args.not_seen_since, "--not-seen-since")
    with connect(args) as client:
        found = client.list_bot_instances(args.bot)
    now = datetime.now(UTC)
    shown = select(found, older_than=args.version_older_than,
                   not_seen_since=since.total_seconds() if since else 0.0, unhealthy=args.unhealthy, now=now)
    shown.sort(key=lambda i: (i.bot_name, i.last_seen or now), reverse=False)
    if args.format == "json":
        print(json.dumps([codec.encode(i) for i in shown], indent=2))
        return 0
    print(render(["Bot", "Instance", "Method", "Version", "Host", "Last Seen", "Healthy", "Current"], [
        [i.bot_name, i.instance_id, i.join_method, i.heartbeat.version or "-", i.heartbeat.hostname or "-",
         _ago(i.last_seen, now), "yes" if i.healthy() else "no", "yes" if i.current else "no"] for i in shown]),
        end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if not args.instance_id:
        raise ValidationError("show: name the instance ID (`ctl bots instances ls`)")
    with connect(args) as client:
        inst = client.get_bot_instance(args.instance_id)
    data = codec.encode(inst)
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
