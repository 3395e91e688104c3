"""The actions the cluster writes to its audit log, in one place, so that a filter (`ctl audit --action`) can be
checked and a typo answered with the closest action instead of an empty log. A test keeps it in step with the
cluster's audit calls."""

from __future__ import annotations

import difflib

from machineid.model.resources import KINDS

# Writes of every kind but bot go through the cluster's generic upsert and delete: KIND.create/update/delete.
_WRITES = tuple(f"{kind}.{verb}" for kind in KINDS if kind != "bot" for verb in ("create", "update", "delete"))

ACTIONS: tuple[str, ...] = tuple(sorted({
    *_WRITES,
    "access.denied",  # a call the caller's roles do not allow
    "bot.create", "bot.update", "bot.delete", "bot.unlock",
    "bot.join",  # a join, or a refused one
    "bot.lock",  # a copied identity or key pair detected
    "cert.issue",  # a user's (or a join's) certificates
    "cert.issue_host",  # a node's host certificate (at its sync, or `ctl auth sign --host`)
    "cert.issue_output",  # a bot's destination certificates
    "cert.renew",
    "node.join",  # a node's join, or a refused one
    "node.lock",  # a node's copied identity or key pair detected
    "node.unlock",
    "token.expire",  # an expired join token deleted by the janitor
}))
FAMILIES: tuple[str, ...] = tuple(sorted({a.partition(".")[0] for a in ACTIONS}))


def unknown(action: str) -> str:
    """Why `action` selects nothing ("" when it is an action or a family), with the closest one."""
    if action in ACTIONS or action in FAMILIES:
        return ""
    close = difflib.get_close_matches(action, [*ACTIONS, *FAMILIES], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"use a family ({', '.join(FAMILIES)}) or one of its actions"
    return f'"{action}" is not an audit action or family; {hint} (`machineid ctl audit --help` lists them)'
