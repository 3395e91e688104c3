"""`--labels key=value,...` as `ctl nodes add` takes it and as the node's sshd_config passes it back to
`machineid node principals`: one parser, so the two always read the same labels."""

from __future__ import annotations

import re

from machineid.model.errors import ValidationError

# Written into sshd_config unquoted: no spaces, quotes or '%' (sshd expands %-tokens in the command).
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
