"""Stops a local Ray instance's processes when the process that started it ends, however it
ends.

``ray.shutdown()`` stops a local instance when its driver exits normally. A driver killed
with SIGKILL (or crashing in native code) cannot run it: the raylet and GCS then exit on
their own, but the raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) were
seen to keep running, reparented to init, indefinitely. :func:`watch` starts a small
process in a session of its own that waits for the driver to close a pipe -- which the
kernel does when the driver dies -- and then kills, with SIGKILL, every process of this
user that belongs to the instance: its command line names the instance's session
directory, or it holds a file of that directory open (Ray's agents and workers keep their
logs there). Session directories are named by the start time and the driver's PID, so no
other process matches. Linux only (it reads ``/proc``); elsewhere :func:`watch` does
nothing.

    python -m meta_train.reaper FD SESSION_DIR DRIVER_PID   # what watch() starts
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

_PROC = pathlib.Path("/proc")


def watch(session_dir: str) -> int | None:
    """Starts the reaper of the instance whose session directory is ``session_dir``; returns
    the write end of its pipe (close it after ``ray.shutdown()``), or ``None`` without
    ``/proc``."""
    if not _PROC.is_dir():
        return None
    read, write = os.pipe()  # not inheritable: Ray's processes do not hold the write end
    subprocess.Popen(
        [sys.executable, "-m", "meta_train.reaper", str(read), session_dir, str(os.getpid())],
        pass_fds=(read,),
        start_new_session=True,  # a Ctrl-C or a kill of the driver's process group spares it
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(read)
    return write


def _belongs(proc: pathlib.Path, session_dir: str) -> bool:
    if session_dir.encode() in (proc / "cmdline").read_bytes():
        return True
    inside = session_dir.rstrip("/") + "/"
    return any(os.readlink(fd).startswith(inside) for fd in (proc / "fd").iterdir())


def members(session_dir: str, spare: tuple[int, ...] = ()) -> list[int]:
    """PIDs of this user's processes of the instance (module docstring) but this one and
    ``spare``."""
    found = []
    for proc in _PROC.iterdir():
        if not proc.name.isdigit() or int(proc.name) in (os.getpid(), *spare):
            continue
        try:
            if _belongs(proc, session_dir):
                found.append(int(proc.name))
        except OSError:  # gone, or another user's
            continue
    return found


def main(argv: list[str]) -> None:
    fd, session_dir, driver = int(argv[0]), argv[1], int(argv[2])
    while os.read(fd, 1):  # b"" when every write end is closed: the driver is done or dead
        pass
    for pid in members(session_dir, spare=(driver,)):  # a driver done is still exiting
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
