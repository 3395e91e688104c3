"""The agent's data dir: made private (0700) before anything is kept in it, and a path that cannot be one (under a
regular file, not writable) refused with the flag to fix, not a traceback: it is a bad flag, exit 3."""

from __future__ import annotations

import os
from pathlib import Path

from machineid.model.errors import ValidationError

FLAG = "--data-dir"


def why_unusable(directory: Path, err: OSError) -> str:
    """The reason a directory cannot be made or written, naming the file in the way when there is one."""
    for p in (directory, *directory.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                return f"{p} is a file, not a directory"
            break
    return err.strerror or str(err)


NOTHING_SENT = " (nothing was sent, a join token is still valid)"


def unusable(directory: Path, err: OSError, what: str = f"data dir ({FLAG})", note: str = "") -> ValidationError:
    return ValidationError(f"the {what} {directory} is not usable: {why_unusable(directory, err)}; choose another "
                           f"directory or fix it{note}")


def ensure_private_dir(directory: Path, note: str = "") -> None:
    """Creates the data dir if need be, readable by the agent's user only."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as e:
        raise unusable(directory, e, note=note) from None
