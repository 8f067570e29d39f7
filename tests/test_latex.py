"""LaTeX in titles and abstracts becomes readable text (newsletter.mail.latex)."""

from __future__ import annotations

import json

import pytest

from newsletter.mail.latex import readable
from tests.conftest import DAILY


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        # The issue's own examples.
        (r"From $A$ $\rightarrow$ $B$", "From A → B"),
        (r"Embeddings in \mathbb{R}", "Embeddings in ℝ"),
        # Real titles of the shared listings (arXiv ids in the comments).
        (  # 2604.28159
            r"Continuous-tone Simple Points: An $\ell_0$-Norm of Cyclic Gradient",
            "Continuous-tone Simple Points: An ℓ₀-Norm of Cyclic Gradient",
        ),
        (  # 2605.02178
            "T$^2$PO: Uncertainty-Guided Exploration Control",
            "T²PO: Uncertainty-Guided Exploration Control",
        ),
        (
            r"M\textsuperscript{4}Fuse: Lightweight State-Space MoE",
            "M4Fuse: Lightweight State-Space MoE",
        ),  # 2605.02444
        (
            r"$\mathcal{B}^{3}$-Net: Controlled Posterior Bridge Learning",
            "ℬ³-Net: Controlled Posterior Bridge Learning",
        ),  # 2605.05722
        (
            r"Beyond Thinking: Imagining in 360$^\circ$ for Humanoid Visual Search",
            "Beyond Thinking: Imagining in 360° for Humanoid Visual Search",
        ),  # 2605.09146
        (
            r"Breaking $\textit{Winner-Takes-All}$: Cooperative Policy Optimization",
            "Breaking Winner-Takes-All: Cooperative Policy Optimization",
        ),  # 2605.11461
        ("Fast Rates in $α$-Potential Games", "Fast Rates in α-Potential Games"),  # 2605.00268
        (
            "Optimal Repair Bandwidth of $(n,n-2,2)$ MDS Array Codes",
            "Optimal Repair Bandwidth of (n,n-2,2) MDS Array Codes",
        ),  # 2605.10508
        # Prose that only looks like LaTeX syntax stays as written.
        (r"Gains of 12% at $O(n \log n)$ cost & more", "Gains of 12% at O(n log n) cost & more"),
        (r"50\% fewer FLOPs", "50% fewer FLOPs"),
        ("It costs $5 per run", "It costs $5 per run"),
        (r"Code: \href{https://github.com/x/y}{our repository}", "Code: our repository"),
        (r"\emph{Fast} and {\em simple} with \"{o}", "Fast and simple with ö"),
        ("No markup at all,\n  just   spaces", "No markup at all, just spaces"),
    ],
)
def test_latex_becomes_readable_text(raw: str, shown: str) -> None:
    assert readable(raw) == shown


@pytest.mark.parametrize(
    "raw", [r"\unknowncommand{x} y", r"$\frac{1}{$", r"\href{a}", "\\", r"a \\ b"]
)
def test_no_backslash_reaches_the_reader_even_from_broken_markup(raw: str) -> None:
    assert "\\" not in readable(raw)


def test_every_title_and_abstract_of_a_shared_listing_day() -> None:
    with (DAILY / "2026-05-12.jsonl").open(encoding="utf-8") as feed:
        records = [json.loads(line) for line in feed]
    marked = [text for r in records for text in (r["title"], r["summary"]) if "\\" in text]
    assert len(marked) > 10  # the day has real LaTeX to convert
    for text in marked:
        shown = readable(text)
        assert "\\" not in shown, shown
        assert len(shown) > len(text) / 3  # nothing swallowed (a bare % was a comment)
