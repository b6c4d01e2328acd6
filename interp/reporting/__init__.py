"""Assemble every analysis into a report: verdict first, then the evidence.

>>> rep = interp.report(model, info)            # doctest: +SKIP
>>> rep.save("reports/seed_cnn"); rep           # doctest: +SKIP
"""

from interp.reporting.build import report
from interp.reporting.comparison import compare
from interp.reporting.result import Report

__all__ = ["Report", "compare", "report"]
