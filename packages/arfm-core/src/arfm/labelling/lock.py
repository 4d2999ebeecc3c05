"""One labeller per output folder: an advisory lock file holding the owner's pid (paper §3.1 tooling).

A labelling run deletes the leftovers of interrupted writes (``clips/.partial-*``) when it
starts; a second run on the same output would delete the first one's clips in progress. The
run therefore takes ``<output>/.arfm-label.lock`` first and refuses, naming the holder, when
another process has it.

With ``fcntl`` (Linux, macOS) the lock is an ``flock`` on the open file: the kernel releases
it when the holder exits, even when killed, so a leftover file never blocks a later run.
Without ``fcntl`` the file is created with ``O_EXCL`` and a file whose pid is no longer
running is taken over.
"""

from __future__ import annotations

import os
from pathlib import Path

from arfm.errors import UserError

LOCK_FILE = ".arfm-label.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class OutputInUseError(UserError):
    """Another labelling process holds the output folder's lock."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "an unknown process"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


class OutputLock:
    """Exclusive lock on a labelling output folder; use as a context manager.

    Args:
        output: the dataset root (created if missing).

    Raises:
        OutputInUseError: another live process holds the lock (the message names its pid).
    """

    def __init__(self, output: str | Path) -> None:
        self.path = Path(output) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refusal() from None
        else:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text = self.path.read_text(encoding="utf-8").strip()
                if text.isdigit() and _pid_running(int(text)):
                    raise self._refusal() from None
                self.path.unlink(missing_ok=True)  # its owner died without cleaning up
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def _refusal(self) -> OutputInUseError:
        return OutputInUseError(
            f"output {self.path.parent} is being labelled by another process ({_holder(self.path)}, lock {self.path}): "
            "wait for it to finish, or label into another folder"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays (unlinking it while another process opens it would let two runs lock
        # two different files); an flock ends with the close, and the pid is cleared.
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None
        if fcntl is None:  # O_EXCL: the file itself is the lock
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
