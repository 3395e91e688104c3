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
from machineid.cli import bot_cmd, ctl, node_cmd, server_cmd, terraform_cmd
from machineid.model.errors import MachineIDError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="machineid", description="Machine identity as code.")
    parser.add_argument("--version", action="version", version=f"machineid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_cmd.add_parser(sub)
    ctl.add_parser(sub)
    bot_cmd.add_parser(sub)
    terraform_cmd.add_parser(sub)
    node_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except MachineIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
