"""LaTeX in titles and abstracts as readable text: ``$\\rightarrow$`` → "→", ``\\mathbb{R}`` → "ℝ".

arXiv metadata is written in LaTeX; a reader should never see backslash markup. The
conversion is pylatexenc's (a maintained LaTeX parser with a large macro-to-Unicode
table); this module only prepares what it is given so ordinary prose survives it (a
bare "%" is a comment to LaTeX, a bare "&" an alignment tab) and guarantees a result:
a text pylatexenc cannot parse loses its markup by a plain rule instead of failing the
issue it is in.
"""

from __future__ import annotations

import functools
import re

from pylatexenc.latex2text import LatexNodes2Text  # type: ignore[import-untyped]

# Only texts with one of these go through the parser (most titles have none).
_MARKERS = re.compile(r"[\\$]")
# The pieces of a text that are LaTeX: each goes through the parser on its own (it
# reads character by character, ~15 ms for a whole abstract, ~50 µs for a formula).
_BRACED = r"\{(?:[^{}]|\{[^{}]*\})*\}"  # one level of nesting: \frac{a}{b^{2}}
_SPAN = re.compile(
    r"(?<!\\)\$\$?[^$]+?\$\$?"  # $...$ and $$...$$
    rf"|\\[A-Za-z]+\*?(?:\s*\[[^\]]*\])?(?:\s*{_BRACED})*"  # \command[opt]{arg}...
    rf"|\\[^A-Za-z\s](?:{_BRACED}|[A-Za-z])?"  # \% \& \'e \"{o}
    r"|\{\\[A-Za-z]+\s[^{}]*\}"  # {\em text}
)
# Characters LaTeX treats as syntax but arXiv authors often mean as prose.
_PROSE = re.compile(r"(?<!\\)([%&#])")
# \href{url}{text}: pylatexenc 2.10/2.11 fail on it; the text is what a reader wants.
_HREF = re.compile(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}")
# What the fallback removes: commands (kept: their braced argument), braces, dollars.
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")
_SPACES = re.compile(r"[ \t\r\n\u00a0]+")
# pylatexenc writes T$^2$PO as "T^2PO" and 360$^\circ$ as "360^∘": Unicode has the
# superscript and subscript digits (and the degree sign) that read as intended.
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_RAISED = re.compile(r"\^(∘|[0-9+\-=n]+(?![A-Za-z0-9_^]))|\^([0-9]+)")
_LOWERED = re.compile(r"_([0-9]+)(?![A-Za-z0-9_^])")


@functools.cache
def _converter() -> LatexNodes2Text:
    # math_mode="text": formulas become their Unicode reading without the $ signs.
    return LatexNodes2Text(math_mode="text", strict_latex_spaces=False)


def _balanced_dollars(text: str) -> str:
    # An odd number of unescaped $ means one is a currency sign: escape the last one
    # rather than let it swallow the rest of the abstract as "math".
    positions = [m.start() for m in re.finditer(r"(?<!\\)\$", text)]
    if len(positions) % 2 == 0:
        return text
    last = positions[-1]
    return text[:last] + "\\$" + text[last + 1 :]


def _fallback(text: str) -> str:
    text = _COMMAND.sub(lambda m: m.group(1) if not m.group(1).isalpha() else "", text)
    return text.replace("{", "").replace("}", "").replace("$", "").replace("\\", "")


def latex_weight(text: str) -> int:
    """How much of ``text`` ``readable`` hands to the LaTeX parser (characters): what
    decoding it costs, for callers that budget untrusted input."""
    if not _MARKERS.search(text):
        return 0
    return sum(len(span) for span in _SPAN.findall(_HREF.sub(r"\1", text)))


def readable(text: str) -> str:
    """``text`` with its LaTeX markup turned into plain Unicode, whitespace collapsed."""
    if not _MARKERS.search(text):
        return " ".join(text.split())
    prepared = _balanced_dollars(_HREF.sub(r"\1", text))
    plain = _SPAN.sub(lambda match: _convert(match.group(0)), prepared)
    if "\\" in plain:  # whatever no span caught: no backslash reaches a reader
        plain = _fallback(plain)
    return _SPACES.sub(" ", plain).strip()


def _convert(span: str) -> str:
    try:
        plain = _converter().latex_to_text(_PROSE.sub(r"\\\1", span))
    except Exception:  # any parser failure: fall back, never fail the issue
        plain = _fallback(span)
    if "\\" in plain:
        plain = _fallback(plain)
    return _scripts(plain)


def _scripts(text: str) -> str:
    def raised(match: re.Match[str]) -> str:
        digits = match.group(1) or match.group(2)
        return "°" if digits == "∘" else digits.translate(_SUPERSCRIPT)

    text = _RAISED.sub(raised, text)
    return _LOWERED.sub(lambda m: m.group(1).translate(_SUBSCRIPT), text)
