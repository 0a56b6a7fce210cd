"""Originals of added documents, stored once per content under files/<sha256>.

A file is written to a temporary name in the same folder, fsync'd and renamed into place,
so a reader never sees a partial original. Removal is the caller's decision (it knows
whether any document still refers to the hash); `locked()` makes that decision and the
removal one step against an add in another process (flock on files.lock beside the folder).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HASH = re.compile(r"^[0-9a-f]{64}$")
TMP_PREFIX = ".tmp-"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FileStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd = -1

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive among the threads of this process (reentrant) and among processes on this
        folder: held from copying an original to committing its document, and from finding a
        hash unused to removing its file, so that one process cannot remove an original another
        has just put (or found already there) for a document it is about to commit."""
        with self._lock:
            if self._lock_depth == 0:
                fd = os.open(self.folder.with_name(self.folder.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    os.close(self._lock_fd)        # releases the flock
                    self._lock_fd = -1

    def path(self, content_hash: str) -> Path:
        if not _HASH.match(content_hash):
            raise ValueError(f"not a sha256 hex digest: {content_hash!r}")
        return self.folder / content_hash

    def has(self, content_hash: str) -> bool:
        return self.path(content_hash).is_file()

    def put(self, source: Path, content_hash: str) -> Path:
        """Copy `source` in under `content_hash` (checked while copying). Atomic; idempotent."""
        dest = self.path(content_hash)
        if dest.is_file() and dest.stat().st_size == Path(source).stat().st_size:
            return dest
        tmp = self.folder / f"{TMP_PREFIX}{content_hash[:16]}-{os.getpid()}-{time.monotonic_ns()}"
        h = hashlib.sha256()
        try:
            with open(source, "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != content_hash:
                raise ValueError(f"{Path(source).name}: the file changed while it was being added")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        return dest

    def remove(self, content_hash: str) -> None:
        self.path(content_hash).unlink(missing_ok=True)

    def collect_garbage(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        """Remove temp files and originals no document refers to, older than `min_age_s`
        (younger ones may belong to an add in progress in another process). Returns how many."""
        removed = 0
        now = time.time()
        for entry in self.folder.iterdir():
            name = entry.name
            stale = (name.startswith(TMP_PREFIX) or (_HASH.match(name) and name not in referenced))
            try:
                if stale and now - entry.stat().st_mtime >= min_age_s:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SpaceReserve:
    """A file of `size` bytes kept beside the database and given up when a delete finds the disk
    full: a delete must write a little (its WAL frames) before it frees anything, and without
    this room it could not run at all. Made again when the disk has room for it twice over."""

    def __init__(self, path: Path, size: int):
        self.path = Path(path)
        self.size = size

    def ensure(self) -> bool:
        """Make the reserve if it is missing (or holds no real blocks: a copy made sparse by
        `cp --sparse`, `rsync -S`) and there is room; True when it is there."""
        try:
            if _allocated(self.path.stat()) >= self.size:
                return True
        except FileNotFoundError:
            pass
        try:
            if shutil.disk_usage(self.path.parent).free < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)    # a part left by a crash is
            try:                                                        # completed, not leaked
                _allocate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's space back to the disk; True when there was one to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def _allocated(st: os.stat_result) -> int:
    """Bytes of real blocks a file holds (its size where the system does not say)."""
    return min(st.st_size, st.st_blocks * 512) if hasattr(st, "st_blocks") else st.st_size


def _allocate(fd: int, size: int) -> None:
    """Real blocks for `size` bytes (a sparse file would reserve nothing)."""
    try:
        os.posix_fallocate(fd, 0, size)
        if _allocated(os.fstat(fd)) >= size:
            return
    except (AttributeError, OSError) as exc:          # macOS; file systems without fallocate
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise
    # not zeros: a file system that compresses (ZFS, btrfs) stores a block of zeros as nothing
    block = os.urandom(CHUNK)
    os.lseek(fd, 0, os.SEEK_SET)
    for _ in range(0, size, CHUNK):
        os.write(fd, block)
