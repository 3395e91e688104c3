"""`machineid completion SHELL`: the shell code that completes commands and flags (argcomplete's)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("completion", help="print shell completion code",
                       description="Print the code that makes SHELL complete machineid's commands and flags.",
                       epilog="examples:\n  source <(machineid completion bash)\n"
                              "  machineid completion zsh > \"${fpath[1]}/_machineid\"\n"
                              "  machineid completion fish > ~/.config/fish/completions/machineid.fish")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["machineid"], shell=args.shell))
    return 0
