"""`ctl audit`: the audit log, filtered, as a table, JSON, or JSON lines for a SIEM, and followed as it grows."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from datetime import UTC, datetime
from typing import Any

from machineid.cli import fmt
from machineid.cli.ctl.common import format_flag
from machineid.cli.ctl.connection import connect
from machineid.model import audit_actions, codec
from machineid.model import validators as v
from machineid.model.errors import ValidationError

AUDIT_PAGE = 1000
FOLLOW_PAUSE = 2.0


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = csub.add_parser("audit", help="show the audit log",
                            description="Every matching event, oldest first. --format jsonl prints one JSON object "
                                        "per line, for a SIEM (with --follow, as they happen).",
                            epilog="examples:\n  machineid ctl audit --since 1h --action bot.join\n"
                                   "  machineid ctl audit --user robot --limit 20\n"
                                   "  machineid ctl audit --format jsonl --follow\n\n"
                                   "actions:\n" + textwrap.fill(", ".join(audit_actions.ACTIONS), 100,
                                                                initial_indent="  ", subsequent_indent="  "))
    format_flag(audit, ["text", "json", "jsonl"])
    audit.add_argument("--after", type=int, default=0, metavar="ID", help="only events after this id")
    audit.add_argument("--since", default="", metavar="WHEN",
                       help="only events this long ago or later (1h, 30m) or since a time (2026-01-31T00:00:00Z)")
    audit.add_argument("--action", "--kind", dest="kind", default="", metavar="ACTION",
                       help="only this action (bot.join) or family of actions (bot, cert, token, access)")
    audit.add_argument("--user", default="", metavar="NAME", help="only events by this user or bot")
    audit.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events (the newest N)")
    audit.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    audit.set_defaults(func=cmd_audit)


def _since(value: str) -> datetime | None:
    if not value:
        return None
    if not v.duration(min_seconds=1).check(value):
        return datetime.now(UTC) - v.parse_duration(value)
    try:
        return codec.parse_time(value)
    except ValueError:
        raise ValidationError(f'--since: "{v.shown(value)}" is neither a duration (1h, 30m) nor a time '
                              "(2026-01-31T00:00:00Z)") from None


def _event_json(e: Any) -> dict[str, Any]:
    return {"id": e.id, "time": e.time.ToJsonString(), "actor": e.actor, "action": e.action, "target": e.target,
            "outcome": e.outcome, "details": json.loads(e.details or "{}")}


def cmd_audit(args: argparse.Namespace) -> int:
    since = _since(args.since)
    if args.kind and (reason := audit_actions.unknown(args.kind)):
        raise ValidationError(f"--action: {reason}")
    if args.limit < 0:
        raise ValidationError("--limit: must be positive (or 0 for every event)")
    if args.follow and args.format == "json":
        raise ValidationError("--follow: a JSON array never ends; use --format jsonl (one event per line) or text")
    with connect(args) as client:
        def page(after: int) -> list[Any]:
            return client.audit_events(after_id=after, limit=AUDIT_PAGE, since=since, action=args.kind,
                                       actor=args.user)

        events: list[Any] = []
        after = args.after
        while batch := page(after):
            events += batch
            if args.limit and len(events) > args.limit:
                events = events[-args.limit:]  # the newest N, without holding the whole log
            after = batch[-1].id
        if args.format == "json":
            print(json.dumps([_event_json(e) for e in events], indent=2))
            return 0
        if args.format == "text":
            rows = [[str(e.id), e.time.ToJsonString(), e.actor, e.action, e.target, e.outcome] for e in events]
            sys.stdout.write(fmt.render(["ID", "Time", "Actor", "Action", "Target", "Outcome"], rows))
        else:
            for e in events:
                print(json.dumps(_event_json(e), sort_keys=True))
        sys.stdout.flush()
        while args.follow:
            time.sleep(FOLLOW_PAUSE)
            while batch := page(after):
                for e in batch:
                    if args.format == "text":
                        print(f"{e.id}  {e.time.ToJsonString()}  {e.actor}  {e.action}  {e.target}  {e.outcome}")
                    else:
                        print(json.dumps(_event_json(e), sort_keys=True))
                after = batch[-1].id
                sys.stdout.flush()
    return 0
