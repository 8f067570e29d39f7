"""BibTeX's LaTeX, read at sign-up speed (issue 16): only the fields a seed uses are
decoded, by the same reader as arXiv's own metadata, within a per-file budget of LaTeX
marks (bibtexparser's decoding middleware took ten minutes for a 5 MB export)."""

from __future__ import annotations

from newsletter.subscribers import library_formats
from newsletter.subscribers.library_formats import parse_library


def test_latex_in_titles_abstracts_and_names_reads_as_text() -> None:
    parsed = parse_library(
        rb"""@article{a,
  title = {{BERT}: {\"U}ber $\alpha$-stable {L}{\'e}vy flights},
  author = {Erd{\H{o}}s, Paul and Ada Lovelace},
  abstract = {We show $x^2 \leq \mathbb{R}$ for \emph{all} cases.}
}
""",
        name="mine.bib",
    )
    [entry] = parsed.entries
    assert entry.title == "BERT: Über α-stable Lévy flights"
    assert entry.authors == ("Erdős, Paul", "Ada Lovelace")
    assert "\\" not in entry.abstract
    assert "$" not in entry.abstract
    assert entry.abstract.startswith("We show x")
    assert entry.abstract.endswith("for all cases.")


def test_past_the_files_latex_budget_markup_is_dropped_not_decoded() -> None:
    marks = library_formats._LATEX_MARKS
    heavy = "\\a" * marks  # one entry spends the whole budget
    data = (
        "@article{a, title = {Heavy}, abstract = {" + heavy + "}}\n"
        "@article{b, title = {\\emph{Deep} nets for $\\alpha$ {G}raphs}}\n"
    ).encode()
    first, second = parse_library(data, name="x.bib").entries
    assert "\\" not in first.abstract
    assert second.title == "Deep nets for Graphs"  # the words stay, the markup goes


def test_long_formulas_spend_the_budget_by_their_length() -> None:
    """A formula is two marks however long it is: the budget also counts the characters
    handed to the LaTeX parser (~8 ms per KB), so a file of long formulas (3.7 MB of
    them took 28 s of one request's CPU) is decoded only up to it."""
    formula = "$\\alpha " + "x^{2} " * 300 + "$"  # 1.8 KB, 3 marks
    count = library_formats._LATEX_CHARS // len(formula) + 20
    data = "".join(
        f"@article{{k{n}, title = {{Paper {n}}}, abstract = {{{formula}}}}}\n" for n in range(count)
    ).encode()
    entries = parse_library(data, name="x.bib").entries
    assert len(entries) == count
    assert "α" in entries[0].abstract  # decoded
    assert "α" not in entries[-1].abstract  # past the budget: the markup dropped
    assert "\\" not in entries[-1].abstract
    assert "x^2 x^2" in entries[-1].abstract  # the rest kept
