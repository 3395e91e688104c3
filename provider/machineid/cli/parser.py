"""The CLI's argument parser: argparse (the standard library: no start-up cost for the agent and the plugins, and
argcomplete builds shell completion on it) with what a mature CLI is expected to do and argparse does not by
default: no silent abbreviations, "did you mean" for mistyped commands and flags, defaults shown in help, and
flags that belong to a command group (ctl's connection flags) accepted after the subcommand too."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from machineid.cli.exit_codes import INVALID, USAGE

# argparse's complaints about a flag's form (no value, a value where none is taken): usage, not a bad value.
_FORM_ERRORS = ("expected ", "ignored explicit argument", "not allowed with argument")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (examples stay examples); every flag with a meaningful
    default says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, "", [], argparse.SUPPRESS) or action.option_strings == []
                or isinstance(action, argparse._HelpAction | argparse._VersionAction)):
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and not self._subparsers:
            self.error(self._unrecognized(extras))  # the command that got them says so, and suggests
        return parsed, extras

    def _unrecognized(self, extras: list[str]) -> str:
        known = [s for a in self._actions for s in a.option_strings]
        hints = []
        for extra in extras:
            flag = extra.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag.startswith("-") else []
            if close:
                hints.append(f"{extra}: did you mean {close[0]}?")
        return f"unrecognized arguments: {' '.join(extras)}" + ("".join(f"\n  {h}" for h in hints))

    def error(self, message: str) -> NoReturn:
        """Usage (2) for a mistyped command or flag, a missing argument; invalid input (3) for a flag given a value
        it does not take (`--format xml`, `--limit x`), as the README's exit-code table says."""
        flag = re.match(r"argument (-[^:]*): (.*)", message, re.DOTALL)
        code = INVALID if flag and not flag.group(2).startswith(_FORM_ERRORS) else USAGE
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.5)
            message = (f"{flag.group(1)}: " if flag else "") + f"'{m.group(1)}' is not one of {', '.join(choices)}"
            if close:
                message += f"; did you mean '{close[0]}'?"
        self.print_usage(sys.stderr)
        self.exit(code, f"{self.prog}: error: {message}\nRun `{self.prog} --help` for more.\n")


def subcommands(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=Parser)
