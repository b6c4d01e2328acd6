"""Write a report directory atomically: the old report or the new one, never half of either.

The files go into a temporary directory beside the target (same file system, so
``rename`` is atomic), each fsynced; then the temporary directory is renamed
in. An existing report is replaced only with ``force``: renamed aside, the new
one renamed in, the old one deleted. SIGINT/SIGTERM are held back during the
two renames so an interrupt cannot fall between them. A run killed outright
leaves a directory named ``.<target>.interp-tmp-<pid>-<hex>`` (or ``-old-``);
the next write beside it removes it once that process is gone (and puts an
aside report back if its target is missing).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from interp.errors import InterpError

_PATTERN = re.compile(r"^\.(?P<target>.+)\.interp-(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_STALE_AFTER_S = 24 * 3600  # even if the pid was reused by another process
# Names a report directory may hold; anything else means the directory is not ours to replace.
REPORT_NAMES = ("report.html", "report.md", "report.json", "figures")


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


def clean_stale(parent: Path) -> list[Path]:
    """Remove temporary directories left in ``parent`` by runs that no longer exist.

    A set-aside old report whose target is missing is renamed back instead.
    Returns the paths removed or restored.
    """
    done: list[Path] = []
    if not parent.is_dir():
        return done
    for entry in sorted(parent.iterdir()):
        match = _PATTERN.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        age = time.time() - entry.stat().st_mtime
        if _alive(int(match["pid"])) and age < _STALE_AFTER_S:
            continue
        target = parent / match["target"]
        if match["kind"] == "old" and not target.exists():
            with contextlib.suppress(OSError):
                entry.rename(target)
                done.append(entry)
                continue
        shutil.rmtree(entry, ignore_errors=True)
        done.append(entry)
    return done


def _check_target(target: Path, force: bool, shown: Path) -> bool:
    """Return True when ``target`` exists and will be replaced; raise when it must not be."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
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
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InterpError(
            f"cannot create `out` directory {str(parent)!r}: {err.strerror}; choose another"
        ) from None
    clean_stale(parent)
    replace = _check_target(target, force, shown)
    tmp = parent / temp_name(target.name, "tmp")
    try:
        tmp.mkdir()
        for rel, data in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"report file name {rel!r} must be relative, without '..'")
            _write_file(tmp / rel, data)
        _fsync_dir(tmp)
        with _signals_held():
            if replace:
                aside = parent / temp_name(target.name, "old")
                target.rename(aside)
                try:
                    tmp.rename(target)
                except BaseException:
                    aside.rename(target)
                    raise
                shutil.rmtree(aside, ignore_errors=True)
            else:
                tmp.rename(target)
            _fsync_dir(parent)
    except OSError as err:
        raise InterpError(
            f"could not write the report to {str(shown)!r}: {err.strerror or err}; "
            "free disk space or choose another `out` directory"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return shown
