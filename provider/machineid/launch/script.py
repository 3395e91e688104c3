"""The executable a CLI or the Pulumi engine runs: this installation's interpreter with the launcher.

A Python script run with -S (no site module: the .pth files of a virtualenv cost milliseconds on every launch),
the package's own directory put on sys.path by hand; the launcher finds site-packages itself when it has to serve
in its own process. Where the interpreter's path cannot stand in a #! line (a space, or too long), a /bin/sh
wrapper runs it instead."""

from __future__ import annotations

import os
import shlex
import sys

import machineid

_SHEBANG_MAX = 127  # what older kernels read of a #! line


def text(program: str, comment: str, python: str = sys.executable) -> str:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(machineid.__file__)))
    body = (f"import sys; sys.path.insert(0, {package_parent!r}); from machineid.launch.launcher import main; "
            f"sys.exit(main({program!r}))")
    shebang = f"#!{python} -S"
    if " " in python or len(shebang) > _SHEBANG_MAX:
        return f"#!/bin/sh\n# {comment}\nexec {shlex.quote(python)} -S -c {shlex.quote(body)} \"$@\"\n"
    return f"{shebang}\n# {comment}\n{body}\n"
