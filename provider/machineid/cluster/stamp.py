"""A change stamp shared by the worker processes of one server: eight bytes in a file each maps.

A worker that changes what every call checks (the locks) writes a new random stamp; the others see a stamp other
than the one they last read and reload at their next call, instead of within their cache's refresh period. Reading
it costs a memory read, not a store query per call.
"""

from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path

SIZE = 8


class ChangeStamp:
    def __init__(self, path: Path) -> None:
        """Maps `path`, creating it (0600) when missing."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self._map[:SIZE]

    def bump(self) -> None:
        self._map[:SIZE] = secrets.token_bytes(SIZE)

    def close(self) -> None:
        self._map.close()
