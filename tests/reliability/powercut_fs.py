"""A FUSE filesystem that loses what was not fsynced, as a power cut does.

Usage: python powercut_fs.py BACKING MOUNTPOINT

Files under MOUNTPOINT are those of BACKING, but what is written to them stays in this
process's memory until the file is fsynced; only then does it reach BACKING (and
BACKING's disk). Kill this process with SIGKILL and unmount: BACKING then holds exactly
what was synced, which is what a machine holds after its power was cut. Directory
entries (create, unlink, rename) reach BACKING at once, as a journaling filesystem's
metadata would. Built on mfusepy (ctypes bindings for libfuse 3).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from typing import Any

import mfusepy as fuse


class Unsynced:
    """One file's contents as the writers see them, and the range not yet synced."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.lo = self.hi = 0  # dirty byte range, empty when lo == hi
        self.truncated = False

    def write(self, buf: bytes, offset: int) -> None:
        end = offset + len(buf)
        if end > len(self.data):
            self.data.extend(b"\0" * (end - len(self.data)))
        self.data[offset:end] = buf
        self.lo, self.hi = (
            (offset, end)
            if self.lo == self.hi
            else (
                min(self.lo, offset),
                max(self.hi, end),
            )
        )

    def truncate(self, length: int) -> None:
        if length < len(self.data):
            del self.data[length:]
            self.truncated = True
            self.hi = min(self.hi, length)
            self.lo = min(self.lo, self.hi)
        else:
            self.write(b"\0" * (length - len(self.data)), len(self.data))


class PowerCutFS(fuse.Operations):
    def __init__(self, backing: str) -> None:
        self.backing = backing
        self.files: dict[str, Unsynced] = {}
        self._mutex = threading.Lock()

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _file(self, path: str) -> Unsynced:
        state = self.files.get(path)
        if state is None:
            with open(self._real(path), "rb") as f:
                state = self.files[path] = Unsynced(f.read())
        return state

    # -- metadata: straight to the backing directory ----------------------------------

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        with self._mutex:
            try:
                st = os.lstat(self._real(path))
            except FileNotFoundError:
                raise fuse.FuseOSError(errno.ENOENT) from None
            attrs = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_atime", "st_mtime")
            }
            attrs["st_ctime"] = st.st_ctime
            state = self.files.get(path)
            attrs["st_size"] = len(state.data) if state is not None else st.st_size
            return attrs

    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, Any]:
        sv = os.statvfs(self._real(path))
        return {key: getattr(sv, key) for key in dir(sv) if key.startswith("f_")}

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._mutex:
            fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.close(fd)
            self.files[path] = Unsynced(b"")
        return 0

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            self._file(path)
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            os.unlink(self._real(path))
            self.files.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            os.rename(self._real(old), self._real(new))
            if old in self.files:
                self.files[new] = self.files.pop(old)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    # -- contents: in memory until fsync -------------------------------------------------

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            return bytes(self._file(path).data[offset : offset + size])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._file(path).write(bytes(data), offset)
        return len(data)

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        with self._mutex:
            self._file(path).truncate(length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            state = self.files.get(path)
            if state is None:
                return 0
            fd = os.open(self._real(path), os.O_WRONLY)
            try:
                if state.truncated:
                    os.ftruncate(fd, len(state.data))
                if state.hi > state.lo:
                    os.pwrite(fd, bytes(state.data[state.lo : state.hi]), state.lo)
                os.fsync(fd)
            finally:
                os.close(fd)
            state.lo = state.hi = 0
            state.truncated = False
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is not a sync: nothing reaches the disk

    def release(self, path: str, fh: int) -> int:
        return 0


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    if not stat.S_ISDIR(os.stat(backing).st_mode):
        raise SystemExit(f"{backing} is not a directory")
    fuse.FUSE(PowerCutFS(backing), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
