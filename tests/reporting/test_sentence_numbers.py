"""Every number a report writes is a number report.json holds: one source of truth per fact.

The oracle is report.json itself, read as data: each number token of every sentence,
table cell and caption of report.md must equal a numeric value of the JSON sections
that section draws on, up to the transforms the report's formatting applies (percent,
the axis's unit step and origin, and the rounding the printed digits imply) and
nothing more. Numbers inside JSON *strings* never count: the verdict's reasons and the
explanations' sentences are stored as text, and matching them would be circular.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_report import L, positional_model, templates

import interp
from interp.reporting.formatting import fmt_shift

# The JSON entries each section's text is written from (section id -> top-level keys).
SCOPES = {
    "verdict": ("sweep", "structure", "equivariance", "data", "settings"),
    "architecture": ("structure",),
    "connectivity": ("connectivity", "structure", "data"),
    "explanation": ("explanation", "sweep", "connectivity", "structure"),
    "shifts": ("sweep", "equivariance", "explanation", "structure"),
    "attribution": ("attribution", "explanation", "sweep"),
    "fix": ("fix", "sweep"),
    "reproducibility": ("model", "data", "settings", "environment", "timings", "structure"),
}
# Text that holds digits but no measured number: names of layers and a citation.
LITERALS = re.compile(r"AdaptiveM(?:ax|ean)Pool[123]d\(1\)|(?:Max|Avg|Blur)Pool[123]d|"
                      r"Conv[123]d|BatchNorm[123]d|Zhang 2019|\b[123]D\b")  # fmt: skip
# A number: optional sign (not a range's hyphen: "15-18"), digits with optional thousands
# commas, decimals, exponent, then % or a ratio's x; never part of a word or identifier.
NUMBER = re.compile(
    r"(?<![\w.)])(?P<sign>\+-|±|[-+])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?:e(?P<exp>[-+]?\d+))?(?P<suffix>%|x(?![\w]))?(?![\w.]?\d)(?![A-Za-z_])"
)
QUOTED = re.compile(r"'([^']*)'")


# Lists whose length the text counts ("9 shifts", "3 samples"); other lengths (a pair's 2)
# are no fact and would let any small integer through.
COUNTED = {"shifts", "samples", "classes", "layers", "per_sample", "per_class", "tied"}
# Identity strings shown verbatim (hash, version, date, spec); their digits are no numbers.
IDENTITY = ("model", "environment", "interp_version", "created", "settings")


def _leaves(value: Any, key: str = "") -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, k)
    elif isinstance(value, list):
        if key in COUNTED:
            yield len(value)
        for v in value:
            yield from _leaves(v, key)
    else:
        yield value


class Facts:
    """The numbers (and names) one section may quote, with the report's unit transforms."""

    def __init__(self, content: dict[str, Any], keys: tuple[str, ...]) -> None:
        keys = (*keys, "figures")  # captions quote what their figure drew
        leaves = [v for k in keys for v in _leaves(content.get(k))]
        self.numbers = sorted({float(v) for v in leaves if isinstance(v, (int, float))
                               and not isinstance(v, bool) and math.isfinite(v)})  # fmt: skip
        self.strings = {str(v) for v in _leaves(content) if isinstance(v, str)}
        layers = (content.get("structure") or {}).get("layers") or []
        self.names = {str(lay.get("name")) for lay in layers} | {
            str(c) for c in content.get("classes") or []}
        self.identity = sorted({str(v) for k in IDENTITY for v in _leaves(content.get(k))
                                if isinstance(v, str) and len(v) >= 4}, key=len, reverse=True)
        axes = [dict(a) for a in content.get("axis") or []]
        self.transforms = [(1.0, 0.0)] + [
            pair
            for a in axes
            for pair in ((float(a.get("step", 1.0)), 0.0),
                         (float(a.get("step", 1.0)), float(a.get("start", 0.0))))
        ]  # fmt: skip

    def holds(self, shown: float, half_ulp: float, percent: bool) -> bool:
        """True when a JSON number, transformed, rounds to ``shown`` at its printed digits."""
        scale = 100.0 if percent else 1.0
        bound = half_ulp * (1 + 1e-9) + 1e-12
        for v in self.numbers:
            for step, start in self.transforms:
                for value in (v, abs(v)):
                    if abs(scale * (start + value * step) - shown) <= bound:
                        return True
        return False


def tokens(text: str, facts: Facts) -> Iterator[tuple[str, float, float, bool]]:
    """(token, value, half a unit in its last printed digit, is percent) of a text."""
    text = QUOTED.sub(lambda m: " " if m.group(1) in facts.strings else m.group(0), text)
    text = LITERALS.sub(" ", text)
    for ident in facts.identity:
        text = text.replace(ident, " ")
    for m in NUMBER.finditer(text):
        digits = m.group("int").replace(",", "")
        frac = m.group("frac") or ""
        value = float(digits + frac)
        exp = int(m.group("exp") or 0)
        half = 0.5 * 10.0 ** (exp - max(len(frac) - 1, 0))
        value *= 10.0**exp
        if m.group("sign") == "-":
            value = -value
        percent = m.group("suffix") == "%" or text[m.end():].startswith(" points")
        yield m.group(0), value, half, percent


def sections(md: str) -> Iterator[tuple[str, list[str]]]:
    """(section id, its lines of text) from report.md; titles, contents and images left out."""
    current, lines = None, []
    for line in md.splitlines():
        anchor = re.fullmatch(r'<a id="([\w-]+)"></a>', line)
        if anchor:
            if current:
                yield current, lines
            current, lines = anchor.group(1), []
        elif current and line and not line.startswith(("## ", "![", "|---", "---")):
            lines.append(re.sub(r"\\(.)", r"\1", line).replace("&lt;", "<").replace("&amp;", "&"))
    if current:
        yield current, lines


def unmatched(md: str, content: dict[str, Any]) -> list[str]:
    missing = []
    for sid, lines in sections(md):
        facts = Facts(content, SCOPES.get(sid, tuple(content)))
        for line in lines:
            cells = line.strip("|").split("|") if line.startswith("|") else [line]
            for cell in cells:
                cell = cell.strip().strip("*")
                if cell in facts.names:  # a table cell naming a layer or a class
                    continue
                for token, value, half, percent in tokens(cell, facts):
                    if not facts.holds(value, half, percent):
                        missing.append(f"[{sid}] {token!r} in: {cell[:160]}")
    return missing


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, dict[str, Any]]:
    x, y = templates(24)
    rep = interp.report(positional_model(), None, data=(x, y), shifts=f"-{L // 2}:{L // 2}:4")
    out = rep.save(tmp_path_factory.mktemp("numbers") / "report")
    return (out / "report.md").read_text(), json.loads((out / "report.json").read_text())


def test_every_number_in_the_tiny_report_is_in_its_json(tiny):
    md, content = tiny
    assert unmatched(md, content) == []
    assert "-&gt;" not in md and "\\`" not in md  # arrows and `names` shown as written


def test_a_number_not_in_the_json_is_caught(tiny):
    md, content = tiny
    t = content["sweep"]["telling"]
    shown = f"{100 * t['accuracy']:.1f}%"
    assert shown in md
    # The same sentence with the telling accuracy off by one printed digit is refused,
    # and so is a number no field holds; the true sentence passes.
    sentence = f"Accuracy is lowest, {shown}, at {fmt_shift(t['shift'], None)}."
    page = '<a id="shifts"></a>\n\n{}\n'
    assert unmatched(page.format(sentence), content) == []
    wrong = sentence.replace(shown, f"{100 * t['accuracy'] + 0.1:.1f}%")
    assert len(unmatched(page.format(wrong), content)) == 1
    assert len(unmatched(page.format("It took 12345.678 s."), content)) == 1


def test_every_section_names_the_same_telling_shift(tiny):
    md, content = tiny
    t = content["sweep"]["telling"]
    shift = fmt_shift(t["shift"], content.get("axis"))
    assert content["explanation"]["shift"] == t["shift"]
    assert t["rule"] in md  # the tie rule is stated
    lowest = f"{100 * t['accuracy']:.1f}%"
    text = dict(sections(md))
    found = 0
    # Wherever a sentence puts the lowest accuracy at a shift, it is the telling shift.
    for sid in ("verdict", "explanation", "shifts"):
        for line in text[sid]:
            for m in re.finditer(r"(?:lowest,? |falls from [^;]*? to )" + re.escape(lowest)
                                 + r",? at (?:\d+ shifts, the smallest in size )?"
                                 r"([-+]?\d+(?:\.\d+)? \w+)", line):  # fmt: skip
                assert m.group(1) == shift, line
                found += 1
    assert found >= 3  # the verdict, the sweep text and the sweep caption all say it
    assert any(shift in line for line in text["explanation"])


@pytest.mark.slow
def test_every_number_in_the_seed_cnn_report_is_in_its_json(tmp_path):
    path = Path(__file__).resolve().parents[2] / "trained" / "seed_cnn.pt"
    if not path.exists():
        pytest.skip("trained/seed_cnn.pt is not in this checkout")
    model, info = interp.load(path)
    out = interp.report(model, info, samples=60).save(tmp_path / "report")
    md, content = (out / "report.md").read_text(), json.loads((out / "report.json").read_text())
    assert unmatched(md, content) == []
