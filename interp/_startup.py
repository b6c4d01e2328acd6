"""Ctrl-C while the `interp` command is still starting: one line, never a traceback.

The console script runs ``from interp.cli.main import main``, which imports this
package, click and the command line (tens of milliseconds) before
:func:`interp.cli.main.main` installs the handlers that raise ``Interrupted`` where
the program is. A SIGINT or SIGTERM in that window would be a KeyboardInterrupt
traceback (or a silent death). So ``interp/__init__.py`` imports this module before
anything else, and importing it calls :func:`catch_early_interrupts`: when the
program being run is the command line (its ``__main__`` imports ``interp.cli.main``),
such a signal prints ``Interrupted.`` and exits 130 (143 on SIGTERM) at once: nothing
has been opened or written yet, so there is nothing to clean up. ``import interp``
anywhere else (a notebook, a script, pytest) changes no handler.

Not covered, because no Python code of ours has run yet: a signal during the
interpreter's own start (``site``, and the generated script's ``import re``).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _exit_interrupted(signum: int, _frame: FrameType | None) -> None:
    """Before the command line's own handlers: say so and exit 128 + signum."""
    try:  # once main() has run and restored this handler, output may be buffered
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.write(2, b"Interrupted.\n")
    os._exit(128 + signum)


def _running_the_command_line() -> bool:
    """Whether ``__main__`` is a program that imports ``interp.cli.main`` (the console
    script, or ``python -c "from interp.cli.main import main; main()"``)."""
    frame = sys._getframe()
    while frame.f_back is not None:  # the outermost frame is the program's own code
        frame = frame.f_back
    return (
        frame.f_globals.get("__name__") == "__main__" and "interp.cli.main" in frame.f_code.co_names
    )


def catch_early_interrupts() -> None:
    """Install :func:`_exit_interrupted` for SIGINT and SIGTERM when running the CLI.

    Signals someone chose to ignore (``nohup``, a background job) stay ignored.
    """
    if not _running_the_command_line():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _exit_interrupted)
        except ValueError:  # not the main thread: leave signals alone
            return


catch_early_interrupts()
