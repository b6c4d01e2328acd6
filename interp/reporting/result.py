"""The Report object: sections for people, a JSON dict for programs, and saving both."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.reporting.blocks import Section
from interp.reporting.jsonio import dumps
from interp.reporting.write import write_tree
from interp.reporting.render_html import render_html
from interp.reporting.render_md import render_md


@dataclass(frozen=True)
class Report:
    """An assembled report: ``sections`` (what the renderers show) and the JSON content.

    ``to_dict()`` follows schema ``interp.report/1`` (``interp.compare/1`` for
    :func:`interp.compare`). In Jupyter the report shows itself as HTML.

    >>> rep = interp.report(model, info, data=(x, y))     # doctest: +SKIP
    >>> rep.save("reports/seed_cnn")                       # doctest: +SKIP
    PosixPath('reports/seed_cnn')
    """

    title: str
    subtitle: str
    sections: tuple[Section, ...]
    content: Mapping[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report JSON as a fresh dict (sorted keys on writing, no NaN)."""
        return copy.deepcopy(dict(self.content))

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The verdict dict (translation_invariant, reasons, suggestions), if any."""
        value = self.content.get("verdict")
        return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else None

    def section(self, id: str) -> Section:
        """The section with anchor ``id`` (e.g. ``"verdict"``, ``"shifts"``)."""
        for section in self.sections:
            if section.id == id:
                return section
        ids = ", ".join(s.id for s in self.sections)
        raise KeyError(f"no section {id!r}; sections: {ids}")

    def _invariant(self) -> bool | None:
        verdict = self.content.get("verdict")
        if isinstance(verdict, Mapping):
            value = verdict.get("translation_invariant")
            return value if isinstance(value, bool) else None
        return None

    def to_json(self) -> str:
        """Strict JSON text (sorted keys, ``allow_nan=False``)."""
        return dumps(self.content)

    def to_html(self, *, fragment: bool = False) -> str:
        """Self-contained HTML (figures embedded); ``fragment`` omits <html>/<head>."""
        return render_html(
            self.title,
            self.subtitle,
            self.sections,
            invariant=self._invariant(),
            created=self.content.get("created"),
            fragment=fragment,
        )

    def to_markdown(self) -> str:
        """Markdown with the same content; figures linked as ``figures/<name>.png``."""
        return render_md(
            self.title, self.subtitle, self.sections, created=self.content.get("created")
        )

    def files(self) -> dict[str, bytes]:
        """Every file of the report directory: relative path -> bytes."""
        out = {
            "report.json": self.to_json().encode("utf-8"),
            "report.html": self.to_html().encode("utf-8"),
            "report.md": self.to_markdown().encode("utf-8"),
        }
        for section in self.sections:
            for fig in section.figures:
                out[f"figures/{fig.name}.png"] = fig.png
        return out

    def save(self, dir: str | Path, force: bool = False) -> Path:
        """Write report.html, report.md, report.json and figures/*.png into ``dir``, atomically.

        Args:
            dir: the report directory; created with its parents.
            force: replace an existing report (atomically) instead of refusing.

        Raises:
            InterpError: ``dir`` holds a report and ``force`` is False, holds other
                files, or the disk refused the write. The old report is left intact.
        """
        return write_tree(Path(dir), self.files(), force=force)

    def _repr_html_(self) -> str:
        return self.to_html(fragment=True)

    def __repr__(self) -> str:
        verdict = {True: "invariant", False: "not invariant", None: "undecided"}[self._invariant()]
        return f"Report({self.title!r}, {len(self.sections)} sections, {verdict})"
