"""The Report object: sections for people, a JSON dict for programs, and saving both."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError
from interp.reporting.blocks import Bullets, Paragraph, Section
from interp.reporting.render_html import render_html
from interp.reporting.render_md import render_md
from interp.reporting.write import write_tree

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Report:
    """An assembled report: ``sections`` (what the renderers show) and the JSON content.

    ``json_text`` is report.json itself (strict, sorted keys), so the frozen report
    holds no mutable dict; ``to_dict()`` parses it, following schema
    ``interp.report/1`` (``interp.compare/1`` for :func:`interp.compare`). In Jupyter
    the report shows itself as HTML.

    >>> rep = interp.report(model, info, data=(x, y))     # doctest: +SKIP
    >>> rep.save("reports/seed_cnn")                       # doctest: +SKIP
    PosixPath('reports/seed_cnn')
    """

    title: str
    subtitle: str
    sections: tuple[Section, ...]
    json_text: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report JSON as a fresh dict (sorted keys, no NaN)."""
        out: dict[str, Any] = json.loads(self.json_text)
        return out

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The verdict dict (translation_invariant, reasons, suggestions), if any."""
        value = self.to_dict().get("verdict")
        return value if isinstance(value, dict) else None

    def sentences(self) -> list[str]:
        """The verdict in sentences, as the report's first section says it: the headline,
        then why and what to do (a comparison: each model's headline and reasons)."""
        first = self.sections[0] if self.sections else None
        out: list[str] = []
        for block in first.blocks if first is not None else ():
            if isinstance(block, Paragraph):
                out.append(block.text)
            elif isinstance(block, Bullets):
                if first is not None and first.id == "verdicts":
                    out.append(block.title)  # "<model>: <headline>"
                out.extend(block.items)
        return out

    def plot(self, ax: Axes | None = None) -> Figure:
        """Accuracy versus shift from the report's sweep (a comparison: one line per model).

        Raises:
            InterpError: no model in the report has a shift sweep (it was made without data).
        """
        from interp.reporting.figures import plot_compare_accuracy

        data = self.to_dict()
        if "models" in data:
            pairs = list(zip(data["names"], data["models"], strict=True))
        else:
            path = (data.get("model") or {}).get("path")
            pairs = [(Path(str(path)).stem if path else "model", data)]
        have = [(name, d["sweep"]) for name, d in pairs if d.get("sweep")]
        if not have:
            raise InterpError(
                "the report has no shift sweep to plot: it was made without data; pass "
                "data=(x, y) (--data FILE) to interp.report"
            )
        return plot_compare_accuracy(
            [n for n, _ in have], [s for _, s in have], data.get("axis"), ax=ax
        )

    def section(self, id: str) -> Section:
        """The section with anchor ``id`` (e.g. ``"verdict"``, ``"shifts"``)."""
        for section in self.sections:
            if section.id == id:
                return section
        ids = ", ".join(s.id for s in self.sections)
        raise KeyError(f"no section {id!r}; sections: {ids}")

    def _invariant(self) -> bool | None:
        verdict = self.verdict
        if isinstance(verdict, Mapping):
            value = verdict.get("translation_invariant")
            return value if isinstance(value, bool) else None
        return None

    def to_json(self) -> str:
        """Strict JSON text (sorted keys, ``allow_nan=False``)."""
        return self.json_text

    def to_html(self, *, fragment: bool = False) -> str:
        """Self-contained HTML (figures embedded); ``fragment`` omits <html>/<head>."""
        return render_html(
            self.title,
            self.subtitle,
            self.sections,
            invariant=self._invariant(),
            created=self.to_dict().get("created"),
            fragment=fragment,
        )

    def to_markdown(self) -> str:
        """Markdown with the same content; figures linked as ``figures/<name>.png``."""
        return render_md(
            self.title, self.subtitle, self.sections, created=self.to_dict().get("created")
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
