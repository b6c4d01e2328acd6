"""The one writer for every output interp makes: report directories, PNGs, checkpoints, cards.

Guarantees (docs/SECURITY.md):

- **Atomic**: everything is built in a temporary directory beside the target (same
  file system), each file fsynced, then renamed into place; the target holds the
  old output or the new one, never half of either. SIGINT/SIGTERM are held back
  during the renames.
- **Refuses to replace** an existing output unless ``force``; a directory that
  holds files other than a report's is never replaced, even with ``force``.
- **The user's umask**: files are created with mode ``0o666`` and directories
  ``0o777``, both masked by the umask, as ``open()`` and ``mkdir`` would
  (``tempfile.mkstemp`` would make them 0600).
- **Nothing outside the target is touched**: a temporary is a directory named
  ``.<target>.interp-tmp-<pid>-<hex>`` (``-old-`` for a replaced report set aside)
  holding a marker file whose content is that very name. Stale temporaries of
  dead runs are cleaned only when the marker is there; a user's directory that
  merely looks like one is left alone.
- **Errors** (read-only or full disk, permissions, immutable files, file size
  limits) are one-line :class:`InterpError` naming the path.

:func:`check_writable` runs the same checks before an analysis starts, so a
bad ``--out`` fails in a second instead of after the work.

Why a private top-level module: loading (``interp.save``), the zoo cards, the CLI
and the report all write through it; ``interp.reporting`` imports the whole
report stack on import, and loading must not depend on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from interp.errors import InterpError

MARKER = ".interp-temporary"  # inside every temporary directory interp makes
_PATTERN = re.compile(r"^\.(?P<target>.+)\.interp-(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_STALE_AFTER_S = 24 * 3600  # even if the pid was reused by another process
# Names a report directory may hold; anything else means the directory is not ours to replace.
REPORT_NAMES = ("report.html", "report.md", "report.json", "figures")
_FIX = {
    errno.ENOSPC: "free disk space or choose another location",
    errno.EDQUOT: "free space within your quota or choose another location",
    errno.EFBIG: "the file size limit (ulimit -f) is too low; raise it or choose another location",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.EACCES: "you cannot write there; check its permissions or choose another location",
    errno.EPERM: "the file or folder is protected (immutable?); choose another location",
}


def temp_name(target: str, kind: str) -> str:
    """Name of a temporary (``tmp``) or set-aside (``old``) directory for ``target``."""
    return f".{target}.interp-{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark(folder: Path) -> None:
    """Write the marker that makes ``folder`` recognisable as interp's own temporary."""
    _write_file(folder / MARKER, folder.name.encode())


def _is_ours(folder: Path) -> bool:
    try:
        return (folder / MARKER).read_bytes() == folder.name.encode()
    except OSError:
        return False


def clean_stale(parent: Path) -> list[Path]:
    """Remove temporaries interp left in ``parent`` in runs that no longer exist.

    Only directories named like interp's temporaries *and* holding interp's marker
    (naming that directory) are touched. A set-aside old report whose target is
    missing is put back instead. Returns the paths removed or restored.
    """
    done: list[Path] = []
    if not parent.is_dir():
        return done
    for entry in sorted(parent.iterdir()):
        match = _PATTERN.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir() or not _is_ours(entry):
            continue
        age = time.time() - entry.stat().st_mtime
        if _alive(int(match["pid"])) and age < _STALE_AFTER_S:
            continue
        target = parent / match["target"]
        if match["kind"] == "old" and not target.exists():
            with contextlib.suppress(OSError):
                (entry / MARKER).unlink()
                entry.rename(target)
                done.append(entry)
                continue
        shutil.rmtree(entry, ignore_errors=True)
        done.append(entry)
    return done


def _os_error(err: OSError, what: str, shown: Path | str) -> InterpError:
    fix = _FIX.get(err.errno or 0, "choose another location")
    return InterpError(f"could not write {what} to {str(shown)!r}: {err.strerror or err}; {fix}")


def _check_dir_target(target: Path, force: bool, shown: Path) -> bool:
    """True when the directory ``target`` exists and will be replaced; raise when it must not."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InterpError(
            f"`out` {str(shown)!r} exists and is not a directory; choose another directory"
        )
    if not target.exists():
        return False
    contents = sorted(p.name for p in target.iterdir())
    if not contents:
        return True  # an empty directory: nothing to lose
    strangers = [name for name in contents if name not in REPORT_NAMES]
    if strangers:
        raise InterpError(
            f"`out` {str(shown)!r} holds files that are not part of a report "
            f"({', '.join(repr(s) for s in strangers[:3])}); choose a new or empty directory"
        )
    if not force:
        raise InterpError(
            f"`out` {str(shown)!r} already holds a report; pass --force (force=True) to "
            "replace it, or choose another directory"
        )
    return True


def _check_file_target(target: Path, force: bool, shown: Path) -> bool:
    if target.is_dir() and not target.is_symlink():
        raise InterpError(f"{str(shown)!r} is a directory; give a file name")
    if target.exists() or target.is_symlink():
        if not force:
            raise InterpError(
                f"{str(shown)!r} already exists; pass --force (force=True) to replace it, or "
                "choose another file name"
            )
        return True
    return False


def _writable_parent(parent: Path, shown: Path) -> None:
    """Refuse when ``parent`` cannot be created or written (nearest existing ancestor)."""
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InterpError(f"cannot create {str(shown)!r}: {str(probe)!r} is not a directory; "
                          "choose another location")  # fmt: skip
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InterpError(
            f"cannot write to {str(probe)!r} (for {str(shown)!r}): permission denied or "
            "read-only; choose another location"
        )
    try:  # os.access says yes to root on a read-only mount or an immutable folder
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as err:
        raise _os_error(err, repr(str(shown)), probe) from None


def check_writable(path: str | os.PathLike[str], *, force: bool = False,
                   directory: bool = True) -> Path:  # fmt: skip
    """Check, before any work, that ``path`` can be written as a report directory or a file.

    Args:
        path: the ``--out`` directory (``directory=True``) or the output file.
        force: an existing output will be replaced.
        directory: the output is a report directory rather than one file.

    Returns:
        The absolute path.

    Raises:
        InterpError: it exists and ``force`` is off, is the wrong kind, holds files
            that are not a report's, or its folder cannot be created or written.

    >>> check_writable("out/report", force=True)        # doctest: +SKIP
    PosixPath('/home/me/out/report')
    """
    shown = Path(path)
    target = Path(os.path.abspath(path))
    if directory:
        _check_dir_target(target, force, shown)
    else:
        _check_file_target(target, force, shown)
    _writable_parent(target.parent, shown)
    return target


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM (main thread, POSIX) until the block is done."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0o666 & ~umask, as open() would) with ``data``, fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _prepare(target: Path, shown: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _os_error(err, "the folder", parent) from None
    clean_stale(parent)
    return parent


def write_tree(target: Path | str, files: Mapping[str, bytes], *, force: bool = False) -> Path:
    """Write ``files`` (relative path -> bytes) as the directory ``target``, atomically.

    Raises:
        InterpError: ``target`` holds a report and ``force`` is False, holds other
            files, or the disk refused the write (full, quota, file size limit).

    >>> write_tree("out/report", {"report.json": b"{}"})        # doctest: +SKIP
    PosixPath('out/report')
    """
    shown = Path(target)  # as the user wrote it, for messages
    target = Path(os.path.abspath(target))  # '.', '..' and trailing slashes resolved
    parent = _prepare(target, shown)
    replace = _check_dir_target(target, force, shown)
    tmp = parent / temp_name(target.name, "tmp")
    try:
        tmp.mkdir()
        _mark(tmp)
        for rel, data in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts or rel == MARKER:
                raise ValueError(f"report file name {rel!r} must be relative, without '..'")
            _write_file(tmp / rel, data)
        (tmp / MARKER).unlink()
        _fsync_dir(tmp)
        with _signals_held():
            if replace:
                aside = parent / temp_name(target.name, "old")
                _mark(target)
                target.rename(aside)
                try:
                    tmp.rename(target)
                except BaseException:
                    aside.rename(target)
                    (target / MARKER).unlink(missing_ok=True)
                    raise
                shutil.rmtree(aside, ignore_errors=True)
            else:
                tmp.rename(target)
            _fsync_dir(parent)
    except OSError as err:
        raise InterpError(
            f"could not write the report to {str(shown)!r}: {err.strerror or err}; "
            f"{_FIX.get(err.errno or 0, 'free disk space or choose another `out` directory')}"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return shown


def write_file(target: Path | str, data: bytes, *, force: bool = False,
               what: str = "the file") -> Path:  # fmt: skip
    """Write ``data`` to the file ``target`` atomically (see the module docstring).

    The file is written inside a marked temporary directory beside ``target``, then
    renamed over it; it gets the mode ``open()`` would give it under the umask.

    Raises:
        InterpError: ``target`` exists and ``force`` is False, is a directory, or the
            disk refused the write; the message names the path.

    >>> write_file("maps.png", png_bytes, force=True)        # doctest: +SKIP
    PosixPath('maps.png')
    """
    shown = Path(target)
    target = Path(os.path.abspath(target))
    parent = _prepare(target, shown)
    _check_file_target(target, force, shown)
    tmp = parent / temp_name(target.name, "tmp")
    try:
        tmp.mkdir()
        _mark(tmp)
        _write_file(tmp / target.name, data)
        with _signals_held():
            os.replace(tmp / target.name, target)
            _fsync_dir(parent)
    except OSError as err:
        raise _os_error(err, what, shown) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return shown
