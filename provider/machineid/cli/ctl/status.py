"""`ctl status` (and `whoami`): which cluster, which identity, until when."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from machineid.cli.ctl.common import OUTPUTS, format_flag
from machineid.cli.ctl.connection import connect
from machineid.model import codec

EXAMPLES = """\
examples:
  machineid ctl --data-dir ./cluster status
  machineid ctl --identity /opt/machine-id/identity --auth-server HOST:3025 status --format json
"""


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    status = csub.add_parser("status", help="who am I, on which cluster (whoami)", epilog=EXAMPLES,
                             description="The cluster's name, version and CA pin, and this identity's user, roles "
                                         "and certificate expiry.")
    format_flag(status, OUTPUTS)
    status.set_defaults(func=cmd_status)
    whoami = csub.add_parser("whoami", help="the same as status", epilog=EXAMPLES)
    format_flag(whoami, OUTPUTS)
    whoami.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        ping = client.ping()
        info = client.identity.info
        expires = client.identity.expires
    data: dict[str, Any] = {"cluster": ping.cluster_name, "address": client.address, "version": ping.server_version,
            "ca_pins": list(ping.ca_pins), "user": info.user, "roles": list(info.roles),
            "bot": info.bot_name, "renewable": info.renewable, "expires": codec.format_time(expires)}
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        left = expires - datetime.now(UTC)
        print(f"Cluster:  {data['cluster']} at {data['address']} (server {data['version']})\n"
              f"CA pin:   {', '.join(data['ca_pins'])}\n"
              f"User:     {data['user']}" + (f" (bot {info.bot_name})" if info.bot_name else "") + "\n"
              f"Roles:    {', '.join(data['roles']) or 'none'}\n"
              f"Expires:  {data['expires']} (in {max(0, int(left.total_seconds() // 60))} minutes)")
    return 0
