"""Lock files: two runs of the same training or the same run directory never work at once.

``RunLock(folder)`` creates ``folder/.lock`` exclusively (``O_CREAT | O_EXCL``, atomic also on
NFS v3+), holding the owner's PID, host and start time, and touches it every
:data:`HEARTBEAT` seconds while held. A second process waits, logging who holds the lock, and
goes on when it is released (it then finds the first one's results). A lock is stale, and
taken over, when its PID no longer runs on this host, or when its heartbeat stopped
:data:`STALE_AFTER` seconds ago (a holder on another host that was killed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from xai_bench.utils.errors import UserInputError
from xai_bench.utils.io import pid_alive

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HEARTBEAT = 30.0
STALE_AFTER = 300.0


class LockTimeoutError(UserInputError):
    """The lock was still held by another run when the wait ran out."""


class RunLock:
    """An exclusive lock on ``folder`` (a context manager).

    Args:
        folder: the folder to lock (created if missing).
        timeout: seconds to wait for another holder (``None``: as long as it takes; 0: fail at
            once); then :class:`LockTimeoutError` names the holder.
        poll: seconds between attempts.
    """

    def __init__(self, folder: str | Path, timeout: float | None = None, poll: float = 1.0) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.timeout = timeout
        self.poll = poll
        self.took_over: dict | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def owner(self) -> dict:
        """The holder's record (``pid``, ``host``, ``started``), ``{}`` if unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def stale(self) -> bool:
        """Whether the lock file's holder is gone."""
        holder = self.owner()
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not pid_alive(holder["pid"]) or holder["pid"] == os.getpid()
        return age > STALE_AFTER

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return True

    def _remove(self, seen: dict) -> bool:
        """Remove the lock file if it still holds the stale record ``seen``: renamed away first,
        so that of two processes taking over at once only one succeeds."""
        aside = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            record = json.loads(aside.read_text())
        except (OSError, ValueError):
            record = {}
        if record != seen:  # a new holder's lock, created after our look: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)
        return record == seen

    def acquire(self) -> RunLock:
        start, told = time.monotonic(), 0.0
        while not self._try():
            seen = self.owner()
            if self.stale() and self._remove(seen):
                self.took_over = seen
                log.warning("took over the stale lock %s of %s", self.path, _who(seen))
                continue
            waited = time.monotonic() - start
            if self.timeout is not None and waited >= self.timeout:
                raise LockTimeoutError(
                    f"{self.path.parent} is in use by {_who(self.owner())} (lock file "
                    f"{self.path}); wait for it to finish, or delete the lock file if that run "
                    "is gone"
                )
            if waited - told >= 60 or told == 0:
                log.warning("waiting for %s, which holds %s", _who(self.owner()), self.path)
                told = waited or 1e-9
            time.sleep(self.poll)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _who(record: dict) -> str:
    if not record:
        return "another run"
    return f"process {record.get('pid')} on {record.get('host')}"
