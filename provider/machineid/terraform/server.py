"""`terraform-provider-machineid`: the plugin that `tofu` and `terraform` start (several times per command).

`main` serves in this process; the launcher that `machineid terraform install` writes runs launcher.py instead,
which has a warm fork server do the same for a fraction of the start-up cost."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

USAGE = """terraform-provider-machineid: the machineid provider for OpenTofu and Terraform.

OpenTofu and Terraform start this program themselves; it is not run by hand. To make it available:

    machineid terraform install        # then, in a configuration with source = "machineid/machineid":
    tofu init && tofu apply            # or terraform init && terraform apply
"""


def run(alive: Callable[[], bool] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("MACHINEID_PROVIDER_LOG", "WARNING").upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from machineid.terraform.plugin import serve
    from machineid.terraform.servicer import register

    # Protocol 6 unless told otherwise: MACHINEID_TF_PROTOCOL=5 serves only 5 (what pre-1.0 Terraform speaks;
    # the tests use it to run every call through the protocol 5 servicer).
    versions = (5,) if os.environ.get("MACHINEID_TF_PROTOCOL") == "5" else (6, 5)
    return serve(register, versions=versions, alive=alive)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv and argv[0] in ("-v", "--version", "version"):
        from machineid import __version__

        sys.stdout.write(f"terraform-provider-machineid {__version__}\n")
        return 0
    code = run()
    # The CLI waits for the process to end after Shutdown: skip the interpreter's teardown (about 0.1 s with
    # gRPC's threads and modules loaded); everything that matters was answered and flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
