"""`--labels key=value,...` as `ctl nodes add` takes it, as `machineid node setup` takes it back on the node (the
command `nodes add` prints) and as the deprecated `node principals` reads it from an old sshd_config: one parser,
so they always read the same labels."""

from __future__ import annotations

import re

from machineid.model.errors import ValidationError

# Printed into a shell command line (and, for nodes set up before `node setup`, sshd_config) unquoted: no spaces,
# quotes or '%' (sshd expands %-tokens in the command).
_VALUE = re.compile(r"[A-Za-z0-9._:/@*-]*")


def parse_labels(value: str, flag: str = "--labels") -> dict[str, str]:
    out = {}
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key:
            raise ValidationError(f'{flag}: "{item}" is not key=value; write e.g. {flag} env=prod,group=web')
        if not _VALUE.fullmatch(key) or not _VALUE.fullmatch(val):
            raise ValidationError(f'{flag}: "{item}" may use letters, digits and . _ : / @ * - only (it goes into '
                                  "the node's sshd_config)")
        out[key] = val
    return out


def format_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
