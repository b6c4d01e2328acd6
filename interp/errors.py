"""The one exception type for problems a user can fix."""

from __future__ import annotations


class InterpError(Exception):
    """A user-fixable problem: a bad file, data that does not fit, a bad option.

    The message is one sentence that names the file or argument and says the fix.
    The CLI prints it as ``Error: ...`` and exits with code 2.
    """
