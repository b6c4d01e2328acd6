"""Assemble every analysis into a report: verdict first, then the evidence.

>>> rep = interp.report(model, info)            # doctest: +SKIP
>>> rep.save("reports/seed_cnn"); rep           # doctest: +SKIP
"""

from interp.report._report import Report
from interp.report.build import report
from interp.report.compare import compare

__all__ = ["Report", "compare", "report"]
