"""The `machineid` command: `server` runs the cluster, `ctl` administers it, `bot` runs the agent, `terraform`
installs the Terraform/OpenTofu provider."""

from __future__ import annotations

import argparse
import os
import sys

# gRPC's C core writes its own unstructured lines to stderr (a TLS failure, a reconnect), around our JSON lines and
# error messages, which already say what happened; GRPC_VERBOSITY=debug brings them back. Set before gRPC loads.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from machineid import __version__
from machineid.cli import (
    bot_cmd,
    completion_cmd,
    ctl,
    exit_codes,
    node_cmd,
    pulumi_cmd,
    review_cmd,
    server_cmd,
    terraform_cmd,
)
from machineid.cli.parser import Parser, subcommands
from machineid.model.errors import MachineIDError

EXAMPLES = """\
examples:
  machineid server start --data-dir ./cluster
  machineid ctl --data-dir ./cluster bots add robot --roles=access --logins=root
  machineid bot start --token TOKEN --ca-pin PIN --auth-server HOST:3025 --data-dir ./bot --destination-dir ./id
  ssh -F ./id/ssh_config root@NODE.CLUSTER

exit codes: 0 ok, 1 failed, 2 usage, 3 invalid input, 4 not found, 5 permission denied or not authenticated,
  6 cluster unreachable, 7 conflict (exists, changed meanwhile, in use), 8 policy violated (review),
  130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="machineid", description="Machine identity as code.", epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"machineid {__version__}")
    sub = subcommands(parser, "command")
    server_cmd.add_parser(sub)
    ctl.add_parser(sub)
    bot_cmd.add_parser(sub)
    terraform_cmd.add_parser(sub)
    node_cmd.add_parser(sub)
    completion_cmd.add_parser(sub)
    pulumi_cmd.add_parser(sub)
    review_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == node_cmd.COMMAND and argv[2:] not in ([], ["-h"], ["--help"]) and "_ARGCOMPLETE" not in os.environ:
        return node_cmd.principals_main(argv[2:])  # sshd's call: never parsed as flags
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except MachineIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.for_error(e)
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ctl get roles --format json | head`): stop quietly, as other tools do. Python would
        # report the failed flush of stdout at exit too, so point stdout at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
