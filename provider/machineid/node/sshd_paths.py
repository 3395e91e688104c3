"""The checks sshd makes of its AuthorizedPrincipalsCommand, made before sshd does, so `node setup` refuses with
the path and the fix instead of leaving a node where every login ends as a bare `Permission denied (publickey)`.

sshd resolves the command's path (realpath), then wants the file and every directory up to `/` owned by root and
not writable by group or others (`bad ownership or modes for directory ...`), and runs it as
AuthorizedPrincipalsCommandUser, who must be able to reach and run it (`Could not stat ...: Permission denied`).
The same holds here for what the helper trusts: its interpreter (named in its `#!` line) and the state file it
reads as that user. A path that does not exist yet is judged by its nearest existing directory: `node setup` creates
the rest root-owned 0755.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

# What to do about a directory anyone may write to (a shared temporary directory such as /tmp): never chmod it.
SHARED_DIR = "it is a directory anyone may write to (such as /tmp)"


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}; fix: {self.fix}"


@dataclass(frozen=True)
class Account:
    """The user sshd runs the helper as (AuthorizedPrincipalsCommandUser)."""

    name: str
    uid: int
    gid: int
    gids: frozenset[int]  # every group, the primary one included

    @classmethod
    def lookup(cls, name: str) -> Account:
        entry = pwd.getpwnam(name)  # KeyError: no such user
        return cls(name, entry.pw_uid, entry.pw_gid, frozenset(os.getgrouplist(name, entry.pw_gid)))

    def may(self, st: os.stat_result, want: int) -> bool:
        """Whether this account has the permission bits `want` (a combination of 4 r, 2 w, 1 x) on a file."""
        if self.uid == 0:
            return not want & 1 or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
        if st.st_uid == self.uid:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid in self.gids:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        return bits & want == want


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _owner_and_modes(path: Path, st: os.stat_result, elsewhere: str) -> list[Problem]:
    out = []
    if st.st_uid != 0:
        out.append(Problem(path, f"owned by uid {st.st_uid}, not root (sshd refuses it)", f"chown root {path}"))
    if st.st_mode & 0o022:
        mode = oct(stat.S_IMODE(st.st_mode))[2:]
        if st.st_mode & stat.S_ISVTX and st.st_mode & 0o002:
            out.append(Problem(path, f"writable by others (mode {mode}; sshd refuses everything under it); "
                                     f"{SHARED_DIR}", elsewhere))
        else:
            who = "group and others" if st.st_mode & 0o022 == 0o022 else (
                "group" if st.st_mode & 0o020 else "others")
            out.append(Problem(path, f"writable by {who} (mode {mode}; sshd refuses it)", f"chmod go-w {path}"))
    return out


def check_chain(path: Path, *, reader: Account | None, read: bool = False, execute: bool = False,
                directory: bool = False, elsewhere: str = "use a path in directories only root can write"
                ) -> list[Problem]:
    """sshd's rule for `path` (or, while it does not exist, for its nearest existing directory): the file (or
    directory) and each directory above it, symlinks resolved, root-owned and not writable by group or others;
    `reader` must be able to reach it (search every directory) and to read and/or execute the file."""
    target = nearest_existing(path)
    real = Path(os.path.realpath(target))
    problems: list[Problem] = []
    chain = [real, *real.parents]
    for i, p in enumerate(chain):
        try:
            st = p.stat()
        except OSError as e:
            problems.append(Problem(p, f"cannot be read ({e.strerror})", "check the path"))
            continue
        is_leaf = i == 0 and target == path
        if is_leaf and not directory and not stat.S_ISREG(st.st_mode):
            problems.append(Problem(p, "is not a regular file", f"remove it (rm -r {p}) and run again"))
        if i == 0 and directory and not stat.S_ISDIR(st.st_mode):
            problems.append(Problem(p, "is not a directory", f"remove it (rm {p}) and run again"))
        problems += _owner_and_modes(p, st, elsewhere)
        if reader is None:
            continue
        if stat.S_ISDIR(st.st_mode) and not reader.may(st, 1):
            problems.append(Problem(p, f"{reader.name} cannot enter it (mode {oct(stat.S_IMODE(st.st_mode))[2:]}),"
                                       f" and sshd runs the helper as {reader.name}",
                                    f"chmod o+x {p} (or choose another --run-as, or --root)"))
        elif is_leaf:
            want = (4 if read else 0) | (1 if execute else 0)
            if want and not reader.may(st, want):
                what = "read and run" if read and execute else ("read" if read else "run")
                problems.append(Problem(p, f"{reader.name} cannot {what} it", f"chmod o+{'r' if read else ''}"
                                                                                 f"{'x' if execute else ''} {p}"))
    if target == path and path != real:
        # A symlink: sshd judges the file it points to (above), but whoever may replace the link decides too.
        for p in path.parents:
            problems += _owner_and_modes(p, p.stat(), elsewhere)
    return list(dict.fromkeys(problems))


def check_interpreter(python: Path, reader: Account | None) -> list[Problem]:
    """The helper's `#!` interpreter: the kernel runs it as the helper's user for every login, so it must be as
    trusted as the helper itself."""
    if not python.is_absolute():
        return [Problem(python, "is not an absolute path", "name the interpreter by its absolute path, e.g. "
                                                            "--python /usr/bin/python3")]
    if not python.exists():
        return [Problem(python, "does not exist", "install Python 3 (e.g. apt-get install python3-minimal), or pass "
                                                  "--python with a root-owned interpreter")]
    return check_chain(python, reader=reader, execute=True,
                       elsewhere="use an interpreter in directories only root can write: --python /usr/bin/python3 "
                                 "(the helper needs no virtualenv)")
