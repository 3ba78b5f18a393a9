"""The descriptors the test process's runtime holds, put back after a test closed or replaced them.

pytest's capture (its temporary files and the saved standard streams), the faulthandler's stream,
logging's files and the journal are open descriptors of the test's own process: a test that calls
`os.closerange(3, 1024)` or puts /dev/null over every descriptor takes them away, and plain pytest
dies of it. The plugin takes stock when the session starts (`Guard`) and, around each phase of each
test (and each file's import), checks them and puts back what the phase broke, before pytest's
capture touches them again. Each comes back from the first source that has it:

1. another descriptor of this process still open on the same file (the capture's copy of stdout);
2. cell_main's descriptors on the same file (/proc/<cell_main>/fd/<n>: the output pipe, the journal);
3. its path, when that still names the same file (/dev/null, a log file);
4. otherwise a stand-in: an empty temporary file for a file (the capture's: what the test printed
   before closing it is gone), /dev/null for anything else.

Standard streams (0, 1, 2) change with pytest's capture between phases: a phase puts back what they
were when it started. The others are the runtime's from the session's start; one the runtime itself
replaces between phases is no longer watched. The functions used are bound at import.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass

_fstat, _stat, _open, _close, _dup, _dup2 = os.fstat, os.stat, os.open, os.close, os.dup, os.dup2
_listdir, _readlink, _fcntl = os.listdir, os.readlink, fcntl.fcntl
_get_inheritable, _set_inheritable = os.get_inheritable, os.set_inheritable
_TemporaryFile, _memfd_create = tempfile.TemporaryFile, os.memfd_create
STANDARD = (0, 1, 2)
Identity = tuple[int, int]  # (st_dev, st_ino)


def identity(fd: int) -> Identity | None:
    """What `fd` refers to, or None when it is not open."""
    try:
        st = _fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class _Held:
    identity: Identity
    path: str  # what /proc/self/fd/<fd> pointed to
    flags: int  # the access mode and O_APPEND, to open a replacement the same way
    regular: bool  # a regular file (a stand-in is a temporary file) or not (/dev/null)
    inheritable: bool


def _held(fd: int) -> _Held | None:
    try:
        st = _fstat(fd)
        path = _readlink(f"/proc/self/fd/{fd}")
        flags = _fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND)
        return _Held((st.st_dev, st.st_ino), path, flags, stat.S_ISREG(st.st_mode), _get_inheritable(fd))
    except OSError:
        return None


class Guard:
    """Takes stock of this process's descriptors now; `before()` / `restore()` around each phase."""

    def __init__(self, parent_pid: int) -> None:
        self._parent = parent_pid
        self._held = {fd: h for fd in _open_descriptors() if (h := _held(fd)) is not None}
        self._streams: dict[tuple[int, Identity], _Held] = {}  # what the standard streams were at a phase's start

    def before(self) -> dict[int, _Held]:
        """What the coming phase must leave as it finds it: the runtime's descriptors still intact,
        and the standard streams as they are now."""
        watched: dict[int, _Held] = {}
        for fd, held in list(self._held.items()):
            now = identity(fd)
            if fd in STANDARD:
                if now is not None and (known := self._streams.get((fd, now)) or _held(fd)) is not None:
                    watched[fd] = self._streams.setdefault((fd, now), known)
            elif now == held.identity:
                watched[fd] = held
            else:  # the runtime itself closed or replaced it since: not ours to watch any more
                del self._held[fd]
        return watched

    def restore(self, watched: dict[int, _Held]) -> list[int]:
        """Put back each of `watched` that the phase closed or replaced; the descriptors put back."""
        broken = [fd for fd, held in watched.items() if identity(fd) != held.identity]
        by_file: dict[Identity, list[int]] = {}
        for fd in broken:
            by_file.setdefault(watched[fd].identity, []).append(fd)
        parent: dict[Identity, str] | None = None
        for ident, fds in by_file.items():
            held = watched[fds[0]]
            source = next((fd for fd, h in watched.items() if h.identity == ident and fd not in broken), None)
            if source is not None:
                fresh = _dup(source)
            else:
                if parent is None:
                    parent = _files_of(self._parent)
                fresh = _reopen(held, parent.get(ident))
            for fd in fds:
                if fd == fresh:  # it took the lowest free number: the one it replaces
                    _set_inheritable(fd, watched[fd].inheritable)
                else:
                    _dup2(fresh, fd, inheritable=watched[fd].inheritable)
            if fresh not in fds:
                _close(fresh)
        return sorted(broken)


def _open_descriptors() -> list[int]:
    return sorted(int(name) for name in _listdir("/proc/self/fd"))


def _files_of(pid: int) -> dict[Identity, str]:
    """The files cell_main holds open, by identity: where to open each again."""
    found: dict[Identity, str] = {}
    try:
        names = _listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        path = f"/proc/{pid}/fd/{name}"
        try:
            st = _stat(path)
        except OSError:
            continue
        found.setdefault((st.st_dev, st.st_ino), path)
    return found


def _reopen(held: _Held, parents_copy: str | None) -> int:
    """A new descriptor on `held`'s file (from cell_main's copy, or its path), or a stand-in."""
    flags = held.flags | os.O_CLOEXEC
    for path in (parents_copy, held.path):
        if not path or not path.startswith("/"):
            continue
        try:
            fd = _open(path, flags)
        except OSError:
            continue
        if identity(fd) == held.identity:
            return fd
        _close(fd)
    if not held.regular:
        return _open(os.devnull, (held.flags & os.O_ACCMODE) | os.O_CLOEXEC)
    try:
        with _TemporaryFile(buffering=0) as standin:  # on disk, in the test's temporary directory
            return _dup(standin.fileno())
    except OSError:  # the test removed that directory too
        return _memfd_create("matrix-standin", os.MFD_CLOEXEC)
