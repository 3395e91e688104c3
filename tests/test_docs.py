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
