"""Version checks that must run before anything else imports torch features."""

from __future__ import annotations

import re

__version__ = "0.1.0"

MIN_TORCH = (2, 6)


def parse_version(text: str) -> tuple[int, int]:
    """Return (major, minor) of a version string such as '2.13.0+cpu'.

    >>> parse_version("2.13.0+cpu")
    (2, 13)
    """
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"cannot read version {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_torch(version: str) -> None:
    """Raise ImportError when torch is older than 2.6 (safe loading needs it)."""
    if parse_version(version) < MIN_TORCH:
        raise ImportError(
            f"interp needs torch >= 2.6 (found {version}): older releases cannot load "
            "files safely with weights_only=True; upgrade with `pip install 'torch>=2.6'`"
        )
