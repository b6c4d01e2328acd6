"""Write a report directory atomically: the old report or the new one, never half of either.

The writer itself lives in :mod:`interp._write`, shared with ``interp.save``, the
attribute PNG and the zoo cards (loading must not import the report package);
this module is the report's face of it.
"""

from __future__ import annotations

from interp._write import REPORT_NAMES, check_writable, clean_stale, temp_name, write_tree

__all__ = ["REPORT_NAMES", "check_writable", "clean_stale", "temp_name", "write_tree"]
