"""`machineid ctl`: the admin CLI (the `tctl` analogue). Talks to the cluster only through machineid.api.

One module per command family, each with its parser stanza: resources (get, rm; apply: create, edit), bots,
tokens, users, nodes, locks, auth, audit, status; connection finds the cluster (review uses it too)."""

from __future__ import annotations

import argparse

from machineid.cli.ctl import audit, auth, bots, locks, nodes, resources, status, tokens, users
from machineid.cli.ctl.connection import connect, connection_flags
from machineid.cli.parser import subcommands

__all__ = ["add_parser", "connect", "connection_flags"]


CTL_EXAMPLES = """\
examples:
  machineid ctl --data-dir ./cluster status
  machineid ctl get roles --format json --auth-server HOST:3025 --identity ./admin.identity
  machineid ctl create -f cluster.yaml --dry-run
  machineid ctl edit role/access
  machineid ctl bots add robot --roles=access --logins=root --format json
  machineid ctl audit --since 1h --action bot.join --format jsonl --follow
"""
FAMILIES = (resources, bots, tokens, users, nodes, locks, auth, audit, status)  # in the order help lists them


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for a in subs for child in dict.fromkeys(a.choices.values()) for leaf in _leaves(child)]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ctl = sub.add_parser("ctl", help="administer the cluster (the tctl analogue)", epilog=CTL_EXAMPLES,
                         description="Administer the cluster: resources, bots, tokens, users, nodes, audit.")
    connection_flags(ctl, suppress=False)
    csub = subcommands(ctl, "ctl_cmd")
    for family in FAMILIES:
        family.add_parsers(csub)
    for leaf in _leaves(ctl):
        connection_flags(leaf, suppress=True)
