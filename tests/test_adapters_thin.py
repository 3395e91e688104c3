"""The adapters stay thin: what differs between resource kinds is decided by the core's handlers and resource
definitions (machineid.iac), so neither the Pulumi nor the Terraform adapter branches on which resource it serves;
nor does the review, which looks kinds up in tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from machineid.pulumi.provider import Provider
from machineid.pulumi.resources import BOT, PROVISION_TOKEN, ROLE
from machineid.pulumi.values import UNKNOWN

ADAPTERS = Path(__file__).resolve().parent.parent / "provider" / "machineid"
PULUMI = ADAPTERS / "pulumi"
REVIEW = ADAPTERS / "review"

# `r is ROLE`, `self.rdef is iac.BOT`, `token != BOT.token`, `rdef.name == "bot"`, `kind == "token"`: a branch on
# the resource kind.
_KIND_BRANCH = re.compile(r"\bis\s+(?:not\s+)?(?:iac\.|ROLE\b|BOT\b|PROVISION_TOKEN\b|NODE\b)"
                          r"|\b(?:ROLE|BOT|PROVISION_TOKEN|NODE)\.token\b"
                          r"|\brdef\.(?:name|kind|type_name)\s*[!=]="
                          r"""|\b(?:kind|name)\s*[!=]=\s*["'](?:role|bot|token|provision_token|node)["']""")


def kind_branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if _KIND_BRANCH.search(line)]


def test_the_pattern_finds_the_branches_it_forbids() -> None:
    assert kind_branches("if r is ROLE:\n    if self.rdef is iac.PROVISION_TOKEN:\n"
                         "if token != BOT.token or not name:\nif rdef.name == 'bot':\nx = BOT\n"
                         "if ch.rdef.kind == \"token\":\nif kind != 'role':\nrun = CHECKS.get(ch.rdef.kind)\n"
                         "if r is NODE:\nif kind == 'node':\n") == [
        "if r is ROLE:", "if self.rdef is iac.PROVISION_TOKEN:", "if token != BOT.token or not name:",
        "if rdef.name == 'bot':", 'if ch.rdef.kind == "token":', "if kind != 'role':", "if r is NODE:",
        "if kind == 'node':"]


@pytest.mark.parametrize("adapter", ["pulumi", "terraform"])
def test_no_adapter_module_branches_on_the_resource_kind(adapter: str) -> None:
    sources = sorted((ADAPTERS / adapter).glob("*.py"))
    assert len(sources) >= 5
    found = {p.name: kind_branches(p.read_text()) for p in sources}
    assert not {name: lines for name, lines in found.items() if lines}, "decide it in machineid.iac (a handler, or " \
                                                                           "the resource definition)"


def test_no_review_module_branches_on_the_resource_kind() -> None:
    """The review reads both tools' plans through the adapters' readers and decides per kind through tables (the
    world's tables, the checks a change gets), so a new kind is a table entry, not a branch."""
    sources = sorted(REVIEW.glob("*.py"))
    assert len(sources) >= 4
    found = {p.name: kind_branches(p.read_text()) for p in sources}
    assert not {name: lines for name, lines in found.items() if lines}, "look the kind up in a table"


def test_a_role_name_is_unknown_in_a_preview_of_its_create_and_a_bot_name_is_not() -> None:
    """A bot naming a role created in the same program skips the role's existence check at preview."""
    p = Provider()
    role = p.create(ROLE.token, "urn", p.check(ROLE.token, "web", {}).inputs, preview=True)
    assert role.outputs["name"] is UNKNOWN
    bot = p.create(BOT.token, "urn", p.check(BOT.token, "robot", {"roles": [UNKNOWN]}).inputs, preview=True)
    assert bot.outputs["name"] == "robot"


def test_pulumi_names_of_what_a_bound_keypair_join_makes_plain() -> None:
    assert BOT.plain_props_in({"joinMethod": "bound_keypair"}) == {"token", "tokenName", "agentConfig"}
    assert PROVISION_TOKEN.plain_props_in({"joinMethod": "bound_keypair", "name": "k"}) == {"name"}
    assert PROVISION_TOKEN.plain_props_in({"joinMethod": "token"}) == frozenset()
    assert ROLE.plain_props_in({"name": "web"}) == frozenset()
    assert Provider().plain_in_check(ROLE.token, {"name": "web"}) == frozenset()


def test_handlers_see_a_narrow_context_and_never_import_the_core() -> None:
    """The core imports the handlers, never the other way round: no import circle, and a handler can only use
    what its Context offers."""
    import subprocess
    import sys

    code = "import sys, machineid.iac.handlers; print(sorted(m for m in sys.modules if m == 'machineid.iac.core'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
    for source in sorted((ADAPTERS / "iac" / "handlers").glob("*.py")):
        assert "iac.core" not in source.read_text() and "Core" not in source.read_text(), source.name
