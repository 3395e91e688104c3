"""`machineid terraform install`: put the Terraform/OpenTofu provider where `init` finds it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("terraform", help="the Terraform/OpenTofu provider",
                       description="The Terraform/OpenTofu provider (terraform-provider-machineid).")
    tsub = p.add_subparsers(dest="terraform_command", required=True, metavar="COMMAND")
    inst = tsub.add_parser(
        "install", help="install the provider into the local plugin mirror that `tofu init`/`terraform init` "
                        "search", description="Install the provider as an unpacked package under DIR (default "
                                              "~/.terraform.d/plugins) for registry.opentofu.org and "
                                              "registry.terraform.io, so `init` finds `source = "
                                              "\"machineid/machineid\"` with no CLI configuration.",
        epilog="examples:\n  machineid terraform install\n  machineid terraform install --plugins-dir ./plugins")
    inst.add_argument("--plugins-dir", type=Path, default=None,
                      help="the mirror directory (default: ~/.terraform.d/plugins)")
    inst.set_defaults(func=run_install)


def run_install(args: argparse.Namespace) -> int:
    from machineid.terraform import install

    installed = install.install(args.plugins_dir)
    print(install.usage_hint(installed), end="")
    return 0
