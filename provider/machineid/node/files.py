"""The files `node setup` writes, as a plan first: each is compared with what is there (so a second run changes
nothing and says so, and --dry-run can say what would change), written atomically (sshd and the helper never read
half a file) root-owned, and put back as it was when sshd then rejects the configuration."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

NEW, CHANGED, UNCHANGED, KEPT = "new", "changed", "unchanged", "kept"


@dataclass(frozen=True)
class Planned:
    path: Path  # as the node sees it (under the node's root)
    data: bytes
    mode: int
    what: str
    summary: str = ""  # shown instead of the contents (a secret, a private key, the helper's source)
    only_if_missing: bool = False  # never replaced: what the node agent keeps fresh, or a generated key
    read_at_start: bool = False  # sshd reads it when it starts: a change needs a reload


@dataclass
class Change:
    planned: Planned
    target: Path  # where it is written (under --dest-dir for an image build)
    status: str
    previous: tuple[bytes, int] | None = None


def plan_change(planned: Planned, target: Path, owner_root: bool) -> Change:
    try:
        st = target.lstat()
    except FileNotFoundError:
        return Change(planned, target, NEW)
    if not stat.S_ISREG(st.st_mode):
        return Change(planned, target, CHANGED)
    old = target.read_bytes()
    previous = (old, stat.S_IMODE(st.st_mode))
    if planned.only_if_missing:
        return Change(planned, target, KEPT, previous)
    same = old == planned.data and previous[1] == planned.mode and (not owner_root or st.st_uid == 0)
    return Change(planned, target, UNCHANGED if same else CHANGED, previous)


def make_dirs(path: Path, owner_root: bool) -> list[Path]:
    """The missing directories above a file, 0755 (root-owned when running as root), as sshd accepts them.
    Returns those it created, outermost first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)  # whatever the umask
        if owner_root:
            os.chown(d, 0, 0)
    return list(reversed(missing))


def write_atomic(target: Path, data: bytes, mode: int, owner_root: bool) -> list[Path]:
    """Temp file beside the target (mode and owner set before the data goes in), fsync, rename, fsync the dir.
    Returns the directories it created."""
    created = make_dirs(target.parent, owner_root)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, mode)
        if owner_root:
            os.fchown(fd, 0, 0)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return created


def undo(changes: list[Change], created: list[Path], owner_root: bool) -> None:
    """Put written files back as they were (removing new ones), then remove the directories made for them."""
    for change in reversed(changes):
        if change.previous is None:
            change.target.unlink(missing_ok=True)
        else:
            write_atomic(change.target, change.previous[0], change.previous[1], owner_root)
    for d in reversed(created):
        with contextlib.suppress(OSError):  # not empty: something else put a file there meanwhile
            d.rmdir()
