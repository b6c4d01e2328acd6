"""Render a report as one self-contained HTML file (figures embedded as base64 PNG).

Jinja2 with autoescape on: every model-derived string (layer names, class
names, file paths) is escaped; the template holds the only markup.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import jinja2
import markupsafe

from interp._version import __version__
from interp.reporting.blocks import Section
from interp.reporting.render_md import CODE

_TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # .html.j2 names do not match select_autoescape's extensions
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["text"] = _text
    env.filters["plain"] = lambda text: CODE.sub(r"\1", text)  # alt text: no markup at all
    env.filters["data_uri"] = lambda png: (
        "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    )
    return env


def _text(text: str) -> markupsafe.Markup:
    """Plain generated text as HTML: escaped, with `name` spans as <code> (no backticks)."""
    out, last = [], 0
    for m in CODE.finditer(text):
        out += [markupsafe.escape(text[last : m.start()]),
                markupsafe.Markup("<code>%s</code>") % m.group(1)]  # fmt: skip
        last = m.end()
    out.append(markupsafe.escape(text[last:]))
    return markupsafe.Markup("").join(out)


def render_html(
    title: str,
    subtitle: str,
    sections: Sequence[Section],
    *,
    invariant: bool | None,
    created: str | None,
    fragment: bool = False,
) -> str:
    """HTML text of a report; ``fragment`` gives a <style> + <main> block for Jupyter.

    >>> render_html("t", "s", [], invariant=None, created=None)[:15]
    '<!DOCTYPE html>'
    """
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        subtitle=subtitle,
        sections=list(sections),
        verdict_class={True: "yes", False: "no", None: "unsure"}[invariant],
        created=created,
        version=__version__,
        fragment=fragment,
    )
