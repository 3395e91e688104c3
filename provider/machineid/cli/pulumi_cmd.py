"""`machineid pulumi install`: put the Pulumi provider in Pulumi's plugin cache, where the engine looks for it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("pulumi", help="the Pulumi provider",
                       description="The Pulumi provider (pulumi-resource-machineid).")
    psub = p.add_subparsers(dest="pulumi_command", required=True, metavar="COMMAND")
    inst = psub.add_parser(
        "install", help="install the provider into Pulumi's plugin cache",
        description="Install this package's provider as the resource plugin machineid at this version into "
                    "Pulumi's plugin cache (DIR/plugins; DIR defaults to $PULUMI_HOME, else ~/.pulumi), as "
                    "`pulumi plugin install` would, so the engine runs it from there instead of finding "
                    "pulumi-resource-machineid on $PATH and warning about it. Run it again after upgrading.",
        epilog="examples:\n  machineid pulumi install\n  machineid pulumi install --pulumi-home ./pulumi-home")
    inst.add_argument("--pulumi-home", type=Path, default=None, metavar="DIR",
                      help="Pulumi's home directory (default: $PULUMI_HOME, else ~/.pulumi)")
    inst.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    from machineid.pulumi import install

    installed = install.install(args.pulumi_home.absolute() if args.pulumi_home else None)
    print(install.usage_hint(installed), end="")
    return 0
