"""The README and the examples as a user copies them: command lines that a shell runs as written, and example
projects that carry no one's stack state."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_readme_command_lines_are_one_command_each() -> None:
    """`rm NAME | unlock NAME` pasted into a shell pipes one command into another: each line is one command."""
    for block in _shell_blocks((ROOT / "README.md").read_text()):
        for line in block.splitlines():
            command = line.split("  #")[0]
            assert " | " not in command and not re.search(r"=\w+\|\w+", command), line


def test_examples_carry_no_stack_files() -> None:
    """A Pulumi.<stack>.yaml holds someone's encryption salt and paths: `pulumi stack init` in a copy then fails."""
    leftovers = [p for p in (ROOT / "examples").rglob("Pulumi.*.yaml")]
    assert not leftovers, leftovers


def _section(page: str, title: str) -> str:
    """One `### Nested Schema for ...` section of a generated page."""
    start = page.index(f"### Nested Schema for `{title}`")
    end = page.find("### Nested Schema for", start + 1)
    return page[start:end if end >= 0 else len(page)]


def test_a_roles_deny_is_not_described_as_allowing() -> None:
    from machineid.terraform import docs

    pages = docs.render()
    for page in (pages["resources/role.md"], pages["data-sources/role.md"]):
        for title in ("deny", "deny.rules"):
            text = _section(page, title).lower()
            assert not re.search(r"\ballow(ed|s)?\b|\breachable\b", text.replace("under allow", "")), text


def test_each_id_says_what_it_is_for_its_own_kind() -> None:
    from machineid.terraform import docs

    pages = docs.render()
    ids = {name: re.search(r"`id` \(String\) ([^\n]*)", page).group(1)  # type: ignore[union-attr]
           for name, page in pages.items() if name != "index.md"}
    assert ids["data-sources/role.md"] == ids["resources/role.md"] == "The role's name."
    assert ids["data-sources/bot.md"] == ids["resources/bot.md"] == "The bot's name."
    assert ids["data-sources/cluster.md"] == "The cluster's name."
    assert "token-method" in ids["resources/provision_token.md"]


def test_a_looked_up_roles_allow_and_deny_have_their_nested_schema() -> None:
    from machineid.terraform import docs

    page = docs.render()["data-sources/role.md"]
    for title in ("allow", "deny", "options", "allow.rules", "deny.rules"):
        assert "### Read-Only" in _section(page, title)
    assert "`verbs` (List of String)" in _section(page, "allow.rules")


def test_readme_and_docs_state_the_label_characters_the_validator_accepts() -> None:
    """One declaration (the validator's) of what a label may hold; a key a node can carry, a role can select."""
    from machineid.model import validators as v
    from machineid.terraform import docs

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"Node labels use {v.LABEL_CHARACTERS}" in readme
    assert v.LABEL_KEY.description in docs.render()["resources/role.md"]
    assert v.LABEL_KEY.check("team@example.com/tier:web_1.x") is None and v.LABEL_KEY.check("*") is None
    assert v.LABEL_KEY.check("a b") and v.LABEL_KEY.check("a*")
