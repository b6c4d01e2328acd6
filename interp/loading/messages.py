"""Helpers that keep InterpError messages to one readable sentence."""

from __future__ import annotations


def few(items: list[str], n: int = 3) -> str:
    """``a, b, c and 4 more``: the first ``n`` items of a list, for a message.

    >>> few(["a", "b", "c", "d"], 2)
    'a, b and 2 more'
    """
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def one_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's text, cut to ``limit`` characters.

    >>> one_line(RuntimeError("Error(s) in loading:\\n\\tsize mismatch"))
    'Error(s) in loading:'
    """
    text = str(err)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line or (type(err).__name__ if isinstance(err, BaseException) else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."
