"""One training run per work dir: a lock that names its holder and dies with it.

The lock is a POSIX record lock (``fcntl.lockf``) on ``WORK_DIR/.train.lock``: the
kernel drops it when the holding process ends, however it ends (SIGKILL, OOM
killer, node reboot), so a lock file left behind never blocks a new run. POSIX
locks, unlike ``flock``, are not inherited by the forked DataLoader workers (a
killed trainer whose workers linger a few seconds releases at once) and are the
kind NFS carries between nodes (Lustre needs the ``flock`` mount option; where the
file system cannot lock, a warning says so and the run goes on unlocked).
The holder writes its pid, host, start time and command into the file, which a
refused run quotes.
"""
import errno
import fcntl
import json
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import Dict, Optional

LOCK_NAME = '.train.lock'

#: locks held by this process, by work dir (a POSIX lock never conflicts with its
#: own process, so a second run in the same process is caught here)
_HELD: Dict[str, 'WorkDirLock'] = {}


class WorkDirLocked(RuntimeError):
    """Another live run holds the work dir."""


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
            f"{', Slurm job ' + info['slurm_job'] if info.get('slurm_job') else ''}, "
            f"started {info.get('started', '?')}, command: {info.get('command', '?')}")


class WorkDirLock:
    """Exclusive lock of ``work_dir`` for one training run (:meth:`acquire` /
    :meth:`release`; released by the kernel when the process ends)."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = osp.abspath(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self._fd: Optional[int] = None
        self.holder: dict = {}  # this process's description, once it holds the lock

    def acquire(self) -> Optional[str]:
        """Take the lock, or raise :class:`WorkDirLocked` naming the holder.

        Returns None, or a warning when the file system does not support locks
        (the run is then not protected)."""
        if self.work_dir in _HELD:
            raise WorkDirLocked(
                f'{self.work_dir} is already used by a training run of this process '
                f'({_describe(_HELD[self.work_dir].holder)}). Use another work dir.')
        os.makedirs(self.work_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EACCES, errno.EAGAIN):
                raise WorkDirLocked(self._refusal()) from None
            return (f'Cannot lock {self.path} ({e.strerror}; the file system does not '
                    f'support POSIX locks, e.g. Lustre mounted without "flock"): a '
                    f'second run started in {self.work_dir} would not be refused.')
        info = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            slurm_job=os.environ.get('SLURM_JOB_ID', ''),
            started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            command=shlex.join([sys.executable] + sys.argv))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
        os.fsync(fd)
        self._fd, self.holder = fd, info
        _HELD[self.work_dir] = self
        return None

    def info(self) -> dict:
        """The holder's description written in the lock file ({} if unreadable).

        Not for the holder: closing any descriptor of the file drops a POSIX lock."""
        try:
            with open(self.path) as f:
                return json.loads(f.read() or '{}')
        except (OSError, ValueError):
            return {}

    def _refusal(self) -> str:
        info = {}
        for _ in range(30):  # the holder writes its description right after locking
            info = self.info()
            if info:
                break
            time.sleep(0.1)
        holder = _describe(
            info) if info else 'a process that has not yet described itself'
        pid = info.get('pid')
        stop = (
            f'stop it (kill {pid}{" on " + info["host"] if info.get("host") else ""}'
            f': it saves a checkpoint on SIGTERM) and continue with --resume, '
            if pid else '')
        return (f'Another training run is using the work dir {self.work_dir}: {holder} '
                f'(it holds {self.path}). Two runs in one work dir overwrite each '
                f"other's checkpoints and logs. Wait for it to end, {stop}or choose "
                f'another --work-dir.')

    def release(self) -> None:
        """Drop the lock (the file stays; it is not a lock by itself)."""
        if self._fd is None:
            return
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
            _HELD.pop(self.work_dir, None)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass
