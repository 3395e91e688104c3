"""`machineid review PLAN`: the access impact of a plan, for the pull request, and the team's policy."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from machineid.cli import exit_codes
from machineid.model.errors import PermissionDeniedError, ValidationError

EXAMPLES = """\
examples:
  tofu plan -out=plan.bin && tofu show -json plan.bin > plan.json
  pulumi preview --json > plan.json
  machineid review plan.json --policy identity-policy.yaml > comment.md
  machineid review plan.json --format json --auth-server HOST:3025 --identity ./ci.identity

The cluster's current roles, bots, tokens and nodes are read with the usual identity; the plan's changes are
applied on top. Exit code 8 when the policy is violated.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from machineid.cli import ctl

    p = sub.add_parser("review", help="what a plan changes about who can do what (for a pull request)",
                       description="Per bot, the logins on nodes, API access, certificate lifetime cap, join "
                                   "methods and who may join as it (delegated tokens' rules, in plain words) that "
                                   "a plan adds or removes; per node the plan creates, changes or deletes, which "
                                   "bots become able or unable to log in to it, as which logins, and why (the roles "
                                   "whose node_labels its labels now match or no longer match); as Markdown for a "
                                   "pull-request comment or JSON.",
                       epilog=EXAMPLES)
    p.add_argument("plan", help="`tofu show -json PLANFILE` (or terraform's) or `pulumi preview --json` output; "
                                "- for stdin")
    p.add_argument("--policy", default="", metavar="FILE", help="a YAML policy to check the plan against")
    p.add_argument("--format", default="markdown", choices=["markdown", "json"], help="output format")
    ctl.connection_flags(p, suppress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from machineid.cli import ctl
    from machineid.model.resources import Bot, Lock, Node, ProvisionToken, Role
    from machineid.review import plan as plans
    from machineid.review import policy as policies
    from machineid.review import report
    from machineid.review.impact import World, impact, sees_every_node, written_tokens
    from machineid.review.locks import lock_impacts
    from machineid.review.nodes import node_impacts

    policy = policies.load(args.policy) if args.policy else None
    try:
        text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text()
    except OSError as e:
        raise ValidationError(f"plan: cannot read {args.plan}: {e.strerror}") from None
    plan = plans.load(text)
    notes: list[str] = []
    with ctl.connect(args) as client:
        try:
            on_cluster = {t.metadata.name: t for t in client.list_as(ProvisionToken)}
        except PermissionDeniedError:
            # Reading tokens means reading single-use tokens' names, their secrets: a reviewer may go without.
            on_cluster = {}
            notes.append("This identity may not list join tokens, so the tokens already on the cluster are not "
                         "shown (who may join as a bot through them); the plan's own tokens are reviewed.")
        before = World(roles={r.metadata.name: r for r in client.list_as(Role)},
                       bots={b.metadata.name: b for b in client.list_as(Bot)}, tokens=on_cluster,
                       nodes={n.metadata.name: n for n in client.list_as(Node)})
        try:
            before.locks = {lk.metadata.name: lk for lk in client.list_as(Lock)}
        except PermissionDeniedError:
            notes.append("This identity may not list locks, so locks already on the cluster are not shown; the "
                         "plan's own locks are reviewed.")
        own_roles = list(client.identity.info.roles)
    if not sees_every_node([before.roles[r] for r in own_roles if r in before.roles]):
        notes.append("The nodes reviewed are those this identity may reach (none of its roles selects every node, "
                     "and nodes are listed by the caller's node_labels): logins on other nodes are not shown. Give "
                     "the review's bot a role with node_labels {'*': ['*']} (it needs no logins) to see them all.")
    now = datetime.now(UTC)
    after = before.apply(plan)
    impacts = impact(before, after, now)
    violations = policies.check(policy, plan, after, impacts, now, before) if policy is not None else None
    tokens = written_tokens(plan, now)
    reached = node_impacts(plan, before, after, now)
    locked = lock_impacts(plan, before, after, now)
    out = report.as_json(plan, impacts, violations, tokens, notes, reached, locked) if args.format == "json" else \
        report.as_markdown(plan, impacts, violations, tokens, notes, reached, locked)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return exit_codes.POLICY if violations else exit_codes.OK
