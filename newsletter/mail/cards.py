"""Paper cards rendered once per paper, not once per issue.

An edition's few hundred papers recur in thousands of issues, and the paper-only part
of a card (title, authors, abstract, links) is the same in every one of them. The
issue templates mark that part::

    {% call(card) paper_card(paper) %} ... {{ card.title }} ... {% endcall %}

and ``paper_card`` renders the block once per (template version, locale, paper) and
hands the same output to every later issue. What makes that safe whatever the card
shows: the block is given ``card``, the paper's shared view exactly as
``newsletter.mail.view.paper_base`` made it (its personal fields empty), never the
reader's own view of the paper; and ``check_card_blocks`` refuses, when a template is
compiled, a block that reads anything else (the reader's ``paper``, ``loop``, the
issue's names) or a personal field of ``card``. Without shared views (a preview, the
issue online) the block renders from the reader's view, uncached, to the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jinja2
from jinja2 import nodes

from newsletter.errors import TemplateError

CARD_CALL = "paper_card"
# Fields of a paper's view that differ per reader: never readable inside the block.
PERSONAL_FIELDS = frozenset({"terms", "score", "rank", "why", "more_url", "less_url"})
# Names a block may read besides its own argument and what it sets itself.
_ALLOWED_NAMES = frozenset({"_", "gettext", "ngettext", "pgettext", "npgettext", "locale"})
_MAX_ENTRIES = 50_000  # a long-running worker must not grow without bound


def check_card_blocks(source: str, env: jinja2.Environment, name: str) -> None:
    """Refuse a template whose card blocks read what differs per reader."""
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError:
        return  # compiling reports it, with its line
    for block in tree.find_all(nodes.CallBlock):
        call = block.call
        if not (isinstance(call.node, nodes.Name) and call.node.name == CARD_CALL):
            continue
        problem = _block_problem(block)
        if problem:
            raise TemplateError(
                f"template {name} line {block.lineno}: a {CARD_CALL} block is rendered once "
                f"for every reader, so it may read only its card argument, translations and "
                f"names it sets itself; {problem}"
            )


def _block_problem(block: nodes.CallBlock) -> str | None:
    args = {arg.name for arg in block.args}
    if len(args) != 1:
        return f"it must take exactly one argument ({{% call(card) {CARD_CALL}(paper) %}})"
    body = nodes.Template(block.body)
    stored = {n.name for n in body.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in body.find_all(nodes.For)):
        stored.add("loop")
    for attr in body.find_all(nodes.Getattr):
        if (
            isinstance(attr.node, nodes.Name)
            and attr.node.name in args
            and attr.attr in PERSONAL_FIELDS
        ):
            return f"card.{attr.attr} differs per reader (put it after the block)"
    for name in body.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in args | stored | _ALLOWED_NAMES:
            return f"it reads {name.name!r}"
    for item in body.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name in args
            and isinstance(item.arg, nodes.Const)
            and item.arg.value in PERSONAL_FIELDS
        ):
            return f"card[{item.arg.value!r}] differs per reader (put it after the block)"
    return None


def uncached_card(paper: Any, *, caller: Callable[[Any], str]) -> str:
    """``paper_card`` without shared views: the block rendered from the reader's view."""
    return caller(paper)


class CardCache:
    """Rendered card blocks, per (template, locale, paper's shared view); one per worker.

    The shared views are the composer's per-paper ``paper_base`` objects; the cache
    holds each one it keys on, so an id is never reused while its entry lives.
    """

    def __init__(self, *, max_entries: int = _MAX_ENTRIES) -> None:
        self._entries: dict[tuple[int, str, int], tuple[object, Any, str]] = {}
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, template: object, locale: str, base: object) -> str | None:
        """The card block of ``template`` already rendered for ``base`` in ``locale``."""
        entry = self._entries.get((id(template), locale, id(base)))
        if entry is not None and entry[0] is template and entry[1] is base:
            self.hits += 1
            return entry[2]
        return None

    def card_call(
        self, template: object, locale: str, papers: Sequence[Any], shared: Sequence[Any]
    ) -> Callable[..., str]:
        """The ``paper_card`` of one render: ``papers[i]`` (the reader's view) is drawn
        from ``shared[i]`` (its shared view)."""
        by_view = {id(view): base for view, base in zip(papers, shared, strict=True)}
        entries = self._entries
        template_id = id(template)

        def paper_card(paper: Any, *, caller: Callable[[Any], str]) -> str:
            base = by_view.get(id(paper))
            if base is None:
                return caller(paper)
            key = (template_id, locale, id(base))
            entry = entries.get(key)
            if entry is not None and entry[0] is template and entry[1] is base:
                self.hits += 1
                return entry[2]
            self.misses += 1
            output = caller(base)
            if len(entries) >= self._max:
                entries.clear()
            entries[key] = (template, base, output)
            return output

        return paper_card
