"""Why a paper is in an issue, in the reader's own words, and the issue's subject line.

recommender.explanations.reasons (pure), mail.readers (the reader's data, from the
database) and mail.view (the wording, the subject and the preheader).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.delivery.compose import Composer
from newsletter.mail.readers import Reader, load_readers
from newsletter.mail.render import Renderer
from newsletter.mail.view import (
    SUBJECT_LIMIT,
    ItemView,
    build_issue_view,
    cut_sentences,
    paper_base,
    preheader_line,
    subject_line,
)
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Feedback,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from newsletter.settings import load_settings
from newsletter.tokens import Tokens
from recommender.explanations import (
    LikedPaper,
    ReaderInterests,
    Reason,
    ReasonKind,
    reasons,
    words_of,
)

SECRET = "s" * 40
RAG = "Retrieval-Augmented Generation"
LIKED_TITLE = "Long-Context Language Models Forget the Middle"
READER = ReaderInterests(
    keywords=["protein folding", RAG],
    topics={"cs.CL": "Computation and Language", "cs.IR": "Information Retrieval"},
    liked=[
        LikedPaper("Diffusion for images", words_of("Diffusion for images denoising")),
        LikedPaper(LIKED_TITLE, words_of(LIKED_TITLE + " context windows of transformers")),
    ],
)


# --- recommender.explanations.reasons (pure) --------------------------------------------


def test_reasons_name_the_keyword_as_typed_the_liked_paper_and_the_topic() -> None:
    found = reasons(
        terms=("augmented generation", "long context", "middle"),
        categories=["cs.LG", "cs.CL"],
        reader=READER,
    )
    assert found == (
        Reason(ReasonKind.KEYWORD, RAG, ("augmented generation",)),
        Reason(ReasonKind.LIKED, LIKED_TITLE, ("long context", "middle")),
        Reason(ReasonKind.TOPIC, "Computation and Language"),
    )


def test_a_term_shared_with_no_interest_gives_no_reason() -> None:
    assert reasons(terms=("galaxy", "redshift"), categories=["astro-ph"], reader=READER) == ()
    # A liked paper counts only when it holds every word of a term.
    assert reasons(terms=("context switching",), categories=[], reader=READER) == ()


def test_the_keyword_covering_most_terms_wins() -> None:
    reader = ReaderInterests(keywords=["generation", RAG])
    [reason] = reasons(terms=("retrieval", "augmented generation"), categories=[], reader=reader)
    assert reason.subject == RAG


def test_a_generic_word_alone_does_not_match_a_keyword() -> None:
    reader = ReaderInterests(keywords=["reinforcement learning", "language models"])
    terms = ("federated", "learning", "clients")
    assert reasons(terms=terms, categories=[], reader=reader) == ()
    [reason] = reasons(terms=("policy", "reinforcement"), categories=[], reader=reader)
    assert reason == Reason(ReasonKind.KEYWORD, "reinforcement learning", ("reinforcement",))
    # A keyword made only of common words is still matched by them.
    [reason] = reasons(terms=("language models",), categories=[], reader=reader)
    assert reason.subject == "language models"


def test_words_fold_like_the_model() -> None:
    assert words_of("Retrieval-Augmented Générátion of the LLMs") == {
        "retrieval",
        "augmented",
        "generation",
        "llms",
    }


# --- mail.readers: the reader's data from the database ---------------------------------


def _add_reader(session: Session) -> tuple[int, int, str]:
    topic = session.get(Topic, "cs.CL")  # the catalogue is seeded by the migrations
    if topic is None:
        topic = Topic(id="cs.CL", name="Computation and Language", description="")
        session.add(topic)
    weekly = Subscriber(
        email="w@example.org",
        token_version=1,
        frequency=Frequency.WEEKLY,
        status=SubscriberStatus.ACTIVE,
    )
    daily = Subscriber(email="d@example.org", token_version=1)
    session.add_all([weekly, daily])
    session.flush()
    session.add_all(
        [
            Interest(subscriber_id=weekly.id, topic_id="cs.CL"),
            Interest(subscriber_id=weekly.id, keywords=RAG),
        ]
    )
    day = date(2026, 5, 27)
    for n, (title, value) in enumerate([(LIKED_TITLE, 1), ("Disliked paper", -1)]):
        paper = Paper(
            external_id=f"2605.0000{n}",
            title=title,
            abstract="About context windows.",
            url=f"https://arxiv.org/abs/2605.0000{n}",
            listed_on=day,
            content_listed_on=day,
        )
        session.add(paper)
        session.flush()
        session.add(
            Feedback(
                subscriber_id=weekly.id,
                paper_id=paper.id,
                value=value,
                created_at=datetime(2026, 5, 20, tzinfo=UTC),
            )
        )
    session.flush()
    return weekly.id, daily.id, topic.name


def test_load_readers(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        weekly_id, daily_id, topic_name = _add_reader(session)
    with sessions() as session:
        readers = load_readers(session, [weekly_id, daily_id, weekly_id])
    weekly = readers[weekly_id]
    assert weekly.weekly
    assert list(weekly.interests.keywords) == [RAG]
    assert dict(weekly.interests.topics) == {"cs.CL": topic_name}  # the display name
    assert [p.title for p in weekly.interests.liked] == [LIKED_TITLE]  # not the disliked one
    assert "windows" in weekly.interests.liked[0].words
    daily = readers[daily_id]
    assert not daily.weekly
    assert (list(daily.interests.keywords), dict(daily.interests.topics)) == ([], {})
    assert list(daily.interests.liked) == []


# --- mail.view: wording, subject, preheader ----------------------------------------------


def _issue(reader: Reader | None, *, titles: list[str], locale: str = "en") -> object:
    settings = load_settings(overrides={"secret_key": SECRET, "public_url": "https://p.example"})
    items = [
        ItemView(
            rank,
            0.5,
            ["augmented generation", "long context"],
            paper_base(
                title=title,
                url=f"https://arxiv.org/abs/2605.1000{rank}",
                authors=["A. Author"],
                categories=["cs.CL"],
                abstract="We study it. It works.",
            ),
        )
        for rank, title in enumerate(titles, start=1)
    ]
    return build_issue_view(
        settings=settings,
        tokens=Tokens(SECRET),
        delivery_id=9,
        subscriber_id=4,
        token_version=2,
        email="ada@example.org",
        edition=date(2026, 5, 27),
        interests="",
        items=items,
        locale=locale,
        reader=reader,
    )


def test_the_why_reads_in_the_readers_words_in_html_and_text() -> None:
    view = _issue(Reader(READER), titles=["One", "Two"])
    rendered = Renderer().render_issue(view)  # type: ignore[arg-type]
    why = (
        f"Why: matches your keyword “{RAG}”; like “{LIKED_TITLE}”, which you marked more like "
        "this; in your topic Computation and Language"
    )
    assert why in rendered.text
    assert "(matched terms: augmented generation, long context)" in rendered.text
    assert why in rendered.html.replace("&#34;", '"')
    german = Renderer().render_issue(_issue(Reader(READER), titles=["Eins"], locale="de"))  # type: ignore[arg-type]
    assert f"Warum: passt zu Ihrem Stichwort „{RAG}“" in german.text


def test_the_mail_rating_links_open_the_issue_page_at_the_paper() -> None:
    view = _issue(None, titles=["One", "Two"])
    second = view.papers[1]  # type: ignore[attr-defined]
    assert second.more_url == f"{view.view_url}?rate=2&choice=more#paper-2"  # type: ignore[attr-defined]
    assert second.less_url == f"{view.view_url}?rate=2&choice=less#paper-2"  # type: ignore[attr-defined]


LONG_TITLE = (
    "Scaling Sparse Mixture-of-Experts Language Models to Trillions of Parameters with "
    "Expert Parallelism and Adaptive Routing"
)


def test_the_subject_is_the_top_title_cut_at_a_word() -> None:
    subject = subject_line([LONG_TITLE, "Other"], weekly=False, locale="en")
    assert len(subject) <= SUBJECT_LIMIT
    assert subject.endswith("…")
    assert LONG_TITLE.startswith(subject.removesuffix("…"))
    assert LONG_TITLE[len(subject) - 1] == " "  # cut at a word
    assert subject_line(["Short title"], weekly=False, locale="en") == "Short title"


def test_a_weekly_subject_says_weekly_and_stays_short() -> None:
    subject = subject_line([LONG_TITLE], weekly=True, locale="en")
    assert subject.startswith("Your week: Scaling Sparse")
    assert len(subject) <= SUBJECT_LIMIT
    assert subject_line([], weekly=True, locale="en") == "No new papers for you this week"
    assert subject_line([], weekly=False, locale="de") == "Heute keine neuen Paper für Sie"
    rendered = Renderer().render_issue(_issue(Reader(weekly=True), titles=["One"]))  # type: ignore[arg-type]
    assert rendered.subject == "Your week: One"
    assert "Top pick today" not in rendered.text + rendered.html


@pytest.mark.parametrize(
    ("titles", "preheader"),
    [
        (["A"], ""),
        (["A", "B"], "Also: B"),
        (["A", "B", "C"], "Also: B · C"),
        (["A", "B", "C", "D"], "Also: B · C and 1 more"),
        (["A", "B", "C", "D", "E"], "Also: B · C and 2 more"),
    ],
)
def test_the_preheader_names_what_else_is_in_the_issue(titles: list[str], preheader: str) -> None:
    assert preheader_line(titles, locale="en") == preheader


def test_abstracts_are_cut_after_a_sentence() -> None:
    text = "First sentence is here. " * 30
    cut, was_cut = cut_sentences(text.strip(), limit=100)
    assert was_cut
    assert cut == " ".join(["First sentence is here."] * 4)
    assert cut_sentences("Short. Done.", limit=100) == ("Short. Done.", False)
    one_long = "word " * 200
    cut, was_cut = cut_sentences(one_long.strip(), limit=100)
    assert was_cut
    assert cut.endswith(" …")
    assert len(cut) <= 102


# --- the whole path: a stored delivery composed as the delivery workers do -----------------


@pytest.mark.sqlite_only
def test_a_composed_issue_says_why_in_the_readers_words(
    sessions: SessionFactory, database_url: str
) -> None:
    with sessions.begin() as session:
        weekly_id, _, topic_name = _add_reader(session)
        edition = Edition(date=date(2026, 5, 27))
        session.add(edition)
        session.flush()
        delivery = Delivery(edition_id=edition.id, subscriber_id=weekly_id)
        session.add(delivery)
        session.flush()
        paper = Paper(
            external_id="2605.99999",
            title=r"RAG over $\mathbb{R}^n$: retrieval for long context",
            abstract="We retrieve. We generate.",
            authors=["A. Author"],
            categories=["cs.CL"],
            url="https://arxiv.org/abs/2605.99999",
            comment="ACL 2026",
            listed_on=date(2026, 5, 27),
            content_listed_on=date(2026, 5, 27),
        )
        session.add(paper)
        session.flush()
        session.add(
            DeliveryItem(
                delivery_id=delivery.id,
                rank=1,
                paper_id=paper.id,
                score=0.5,
                terms=["augmented generation", "context windows"],
            )
        )
        delivery_id = delivery.id
    settings = load_settings(overrides={"secret_key": SECRET, "database_url": database_url})
    composer = Composer(settings, Renderer(), Tokens(SECRET))
    with sessions() as session:
        [job], blocked = composer.load(session, [delivery_id])
    assert blocked == []
    _, rendered = composer.render(job)
    assert rendered.subject == "Your week: RAG over ℝⁿ: retrieval for long context"
    assert (
        f"Why: matches your keyword “{RAG}”; like “{LIKED_TITLE}”, which you marked more like "
        f"this; in your topic {topic_name}"
    ) in rendered.text
    assert "arXiv:2605.99999 · 2026-05-27 · cs.CL" in rendered.text
    assert "ACL 2026" in rendered.html
    assert "\\mathbb" not in rendered.text + rendered.html
