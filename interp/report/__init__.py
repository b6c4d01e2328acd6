"""Assemble every analysis into a report: verdict first, then the evidence.

>>> rep = interp.report(model, info)            # doctest: +SKIP
>>> rep.save("reports/seed_cnn"); rep           # doctest: +SKIP
"""

import sys
import types
from typing import Any

from interp.report._report import Report
from interp.report.build import report
from interp.report.compare import compare

__all__ = ["Report", "compare", "report"]


class _CallableModule(types.ModuleType):
    """``interp.report`` names both this package and the function :func:`report`.

    Once the package is imported, Python binds the attribute ``interp.report`` to the
    package, which shadows the lazy export of the function; calling the package
    calls the function, so ``interp.report(model, info)`` works either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
