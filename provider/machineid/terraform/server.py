"""`terraform-provider-machineid`: the plugin that `tofu` and `terraform` start (several times per command).

Start-up counts, so the heavy modules (the cluster client, cryptography for the identity) load only when the
provider first talks to the cluster."""

from __future__ import annotations

import logging
import os
import sys

USAGE = """terraform-provider-machineid: the machineid provider for OpenTofu and Terraform.

OpenTofu and Terraform start this program themselves; it is not run by hand. To make it available:

    machineid terraform install        # then, in a configuration with source = "machineid/machineid":
    tofu init && tofu apply            # or terraform init && terraform apply
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv and argv[0] in ("-v", "--version", "version"):
        from machineid import __version__

        sys.stdout.write(f"terraform-provider-machineid {__version__}\n")
        return 0
    logging.basicConfig(level=os.environ.get("MACHINEID_PROVIDER_LOG", "WARNING").upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from machineid.terraform.plugin import serve
    from machineid.terraform.servicer import register

    return serve(register)


if __name__ == "__main__":
    sys.exit(main())
