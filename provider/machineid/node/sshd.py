"""Reloading sshd after its host certificate changed: SIGHUP makes sshd re-execute itself and read its host keys
and certificates again, while the sessions it already serves (each in a process of its own) go on."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger("machineid.node")


def reload(pid_file: str) -> bool:
    """SIGHUP to the pid in pid_file; False (with a warning, never an error: the new certificate is in place for
    sshd's next start) when there is none to signal."""
    if not pid_file:
        log.warning("the host certificate changed and sshd_pid_file is empty: sshd goes on presenting the old one "
                    "until it is reloaded (systemctl reload ssh)")
        return False
    try:
        pid = int(Path(pid_file).read_text().split()[0])
        if pid <= 1:
            raise ValueError(f"pid {pid}")
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as e:
        log.warning("could not reload sshd from %s (%s); it presents the new host certificate from its next start",
                    pid_file, e)
        return False
    log.info("reloaded sshd (pid %d) for its new host certificate", pid)
    return True
