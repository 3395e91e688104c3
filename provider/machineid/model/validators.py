"""Small described validators (terraform-plugin-framework style): each is a value with a description, so the
schema generators can document every rule, and each returns a reason string instead of raising."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """Parse a Go/Teleport-style duration ("1h30m", "90s", "-5m"). Raises ValueError with a fix hint."""
    s = text.strip()
    sign = 1.0
    if s.startswith("-"):
        sign, s = -1.0, s[1:]
    if s == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'"{text}" is not a duration; write it like "1h", "30m" or "1h30m"')
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f'"{text}" is too long; durations go up to 100 years')
    return timedelta(seconds=sign * total)


def format_duration(value: timedelta) -> str:
    """Inverse of parse_duration for whole seconds: 5400s -> "1h30m"."""
    secs = int(value.total_seconds())
    if secs == 0:
        return "0s"
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return sign + out


Found = tuple[tuple[str | int, ...], str]  # (where inside the value, the reason)


@dataclass(frozen=True)
class Validator:
    """description documents the rule; check returns None when fine, else the reason (which says the fix). A
    validator of a collection's items also says which item (`where`), so the violation's path names it."""

    description: str
    check: Callable[[Any], str | None]
    where: Callable[[Any], Found | None] | None = None

    def find(self, value: Any) -> Found | None:
        """The first problem and where inside the value it is (() for the value itself); None when fine."""
        if self.where is not None:
            return self.where(value)
        reason = self.check(value)
        return ((), reason) if reason else None


def _from(where: Callable[[Any], Found | None]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        found = where(v)
        return found[1] if found else None

    return check


def shown(value: str, limit: int = 64) -> str:
    """A value quoted in a message, bounded: a caller must not be able to make an error (and so a log line or an
    answer) as large as what it sent."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


def _regex(pattern: str, description: str, hint: str) -> Validator:
    rx = re.compile(pattern)

    def check(v: Any) -> str | None:
        if isinstance(v, str) and not rx.fullmatch(v):
            return f'"{shown(v)}" is not valid: {hint}'
        return None

    return Validator(description, check)


regex = _regex  # for validators declared next to their fields elsewhere in the model

RESOURCE_NAME = _regex(
    r"[A-Za-z0-9][A-Za-z0-9._@-]{0,252}",
    "letters, digits, '.', '_', '-', '@'; starts with a letter or digit; at most 253 characters",
    "use letters, digits, '.', '_', '-' or '@', starting with a letter or digit (at most 253 characters)",
)

INSTANCE_ID = _regex(r"[0-9a-f]{32}", "32 hex digits (a bot's status.instance_id)",
                     "an instance ID is the 32 hex digits `ctl get bot NAME` shows as status.instance_id")

LOGIN = _regex(
    r"[a-z_][a-z0-9_.-]{0,31}\$?|\{\{\s*(internal|external)\.[A-Za-z0-9_]+\s*\}\}",
    "a POSIX login name, or a trait template such as {{internal.logins}}",
    "a login is a POSIX user name (lower case, at most 32 characters) or a template like {{internal.logins}}",
)

# Node labels are written unquoted into sshd_config: the one statement of their characters (README, docs, hints).
LABEL_CHARACTERS = "letters, digits and `. _ : / @ -`"
LABEL_KEY = _regex(
    r"\*|[A-Za-z0-9._:/@-]{1,63}",
    f"a label key: {LABEL_CHARACTERS} (at most 63), or `*` alone for any key",
    f"label keys use {LABEL_CHARACTERS} (at most 63), or are `*` alone for any key",
)
LABEL_NAME = _regex(  # an object's own label keys: no wildcard
    r"[A-Za-z0-9._:/@-]{1,63}",
    f"a label key: {LABEL_CHARACTERS} (at most 63)",
    f"label keys use {LABEL_CHARACTERS} (at most 63)",
)
# Label values end up in audit records, tables, the principals helper's input and bots' ssh_config comments:
# any text but control characters (a newline, a NUL).
LABEL_VALUE = _regex(
    r"[^\x00-\x1f\x7f]*",
    "any text without control characters (such as a newline or NUL)",
    "label values may not contain control characters (such as a newline or NUL)",
)

AWS_ACCOUNT = _regex(r"\d{12}", "a 12-digit AWS account ID", "an AWS account ID is exactly 12 digits")

AWS_ARN_GLOB = _regex(
    r"arn:aws[a-z-]*:(iam|sts)::(\d{12}|[*?]+|[\d*?]{1,12}):[A-Za-z0-9+=,.@_/*?-]+",
    "an IAM or STS ARN; '*' and '?' are globs",
    "write an ARN like arn:aws:sts::111111111111:assumed-role/ROLE/* ('*' and '?' are globs)",
)


DNS_NAME = _regex(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    "a DNS name: labels of letters, digits and '-' separated by dots",
    "use a DNS name such as example.com (letters, digits, '-' and dots; it ends up in ssh_config and known_hosts)",
)

HOST_PRINCIPAL = _regex(
    r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,252}",
    "a host name or IP address (letters, digits, '.', '_', '@', ':', '-')",
    "a host principal is a host name or IP address: letters, digits, '.', '_', '@', ':' or '-'",
)
MAX_HOST_PRINCIPALS = 256  # OpenSSH's (and cryptography's) limit on a certificate's principals

# What a path must not contain to be written safely into ssh_config (% expands, " ends the quoting), a systemd
# unit ($ and % expand, \ escapes) or a YAML file: control characters, quotes, '%', '$' and backslashes.
_PATH_CHARS = r"[^\x00-\x1f\x7f\"'%$\\]"
SAFE_PATH = _regex(
    _PATH_CHARS + "+",
    "a path without control characters, quotes, '%', '$' or '\\'",
    "a path may not contain control characters (such as a newline), quotes, '%', '$' or backslashes",
)
ABSOLUTE_PATH = _regex(
    "/" + _PATH_CHARS + "*",
    "an absolute path without control characters, quotes, '%', '$' or '\\'",
    "use an absolute path (starting with /) without control characters, quotes, '%', '$' or backslashes",
)


def _ssh_public_key(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    from machineid.model.keys import parse_ssh_public_key

    try:
        parse_ssh_public_key(v)
    except ValueError as e:
        return f'"{shown(v)}" is not valid: {e}'
    return None


SSH_PUBLIC_KEY = Validator("an OpenSSH public key line, Ed25519 or ECDSA P-256 (ssh-ed25519 AAAA...)", _ssh_public_key)

MIN_REGISTRATION_SECRET = 32
_SECRET_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def is_secret_hash(value: str) -> bool:
    return bool(_SECRET_HASH.fullmatch(value))


def secret_hash(secret: str) -> str:
    """How a bound_keypair registration secret is stored: at least 128 bits of it (the model's rule), so a plain
    SHA-256 cannot be searched."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def _registration_secret(v: Any) -> str | None:
    # Never quotes the value: it is a secret.
    if isinstance(v, str) and not is_secret_hash(v) and len(v) < MIN_REGISTRATION_SECRET:
        return (f"is too short ({len(v)} characters); use at least {MIN_REGISTRATION_SECRET} random characters "
                "(e.g. `openssl rand -hex 16`) or its hash sha256:HEX")
    return None


REGISTRATION_SECRET = Validator(f"at least {MIN_REGISTRATION_SECRET} characters, or sha256: and 64 hex digits",
                                _registration_secret)


def at_least(minimum: int) -> Validator:
    def check(v: Any) -> str | None:
        return f"{v} is too small; use {minimum} or more" if isinstance(v, int) and v < minimum else None

    return Validator(f"at least {minimum}", check)


def non_empty() -> Validator:
    def check(v: Any) -> str | None:
        return "must not be empty" if v in ("", None) or (isinstance(v, list | dict) and not v) else None

    return Validator("must not be empty", check)


def one_of(*values: str) -> Validator:
    allowed = ", ".join(f'"{v}"' for v in values)

    def check(v: Any) -> str | None:
        return None if v in values else f'"{v}" is not allowed; use one of {allowed}'

    return Validator(f"one of {allowed}", check)


def each(inner: Validator) -> Validator:
    """Applies inner to list items; the first bad item's index is where the problem is."""

    def where(v: Any) -> Found | None:
        if isinstance(v, list):
            for i, item in enumerate(v):
                found = inner.find(item)
                if found:
                    return (i, *found[0]), found[1]
        return None

    return Validator(f"each item: {inner.description}", _from(where), where)


def each_key(inner: Validator) -> Validator:
    """Applies inner to a map's keys; the first bad key is where the problem is."""

    def where(v: Any) -> Found | None:
        if isinstance(v, dict):
            for k in v:
                reason = inner.check(k)
                if reason:
                    return (k,), f"key {reason}"
        return None

    return Validator(f"each key: {inner.description}", _from(where), where)


def subset_of(values: Sequence[str]) -> Validator:
    allowed = ", ".join(f'"{v}"' for v in values)

    def check(v: Any) -> str | None:
        if isinstance(v, list):
            for item in v:
                if item not in values:
                    return f'"{item}" is not allowed; use {allowed}'
        return None

    return Validator(f"each item one of {allowed}", check)


def duration(min_seconds: float = 1, max_seconds: float | None = None) -> Validator:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or v == "":
            return None
        try:
            d = parse_duration(v).total_seconds()
        except ValueError as e:
            return str(e)
        if d < min_seconds:
            return f'"{v}" is too short; it must be at least {format_duration(timedelta(seconds=min_seconds))}'
        if max_seconds is not None and d > max_seconds:
            return f'"{v}" is too long; it must be at most {format_duration(timedelta(seconds=max_seconds))}'
        return None

    desc = "a duration such as 1h or 30m" + (
        f", at least {format_duration(timedelta(seconds=min_seconds))}" if min_seconds else ""
    )
    return Validator(desc, check)


def each_value(inner: Validator) -> Validator:
    """Applies inner to a map's values (each item of values that are lists); the first bad one is where the
    problem is."""

    def where(v: Any) -> Found | None:
        if isinstance(v, dict):
            for k, val in v.items():
                items = list(enumerate(val)) if isinstance(val, list) else [(None, val)]
                for i, item in items:
                    reason = inner.check(item)
                    if reason:
                        return ((k,) if i is None else (k, i)), reason
        return None

    return Validator(f"each value: {inner.description}", _from(where), where)
