"""Batch recommendations without a database: JSONL papers and profiles in, JSONL picks out.

The ``newsletter recommend`` command reads papers to rank (PAPERS), optional
background papers the model is also fitted on (CORPUS) and reader profiles, all
as JSON Lines, and writes one line per profile with its best papers. Every input
is validated before anything is ranked, so a bad line stops the run with nothing
written; the problems name ``FILE:LINE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import IO, Any, TypedDict

import numpy as np
import scipy.sparse

from newsletter.errors import NewsletterError, UnknownTopic
from newsletter.papers.catalogue import CatalogueTopic, resolve_topic
from newsletter.papers.sources import ARXIV_ID, PaperRecord, Problem, normalise_space
from newsletter.papers.sources.jsonl import RecordError, date_from_name, json_lines, parse_record
from recommender import (
    Document,
    RankResult,
    TfidfModel,
    apply_feedback,
    build_profiles,
    explain,
    fit_transform,
    rank,
)

DEFAULT_WHY = 3

# The records carry no date the ranking uses; a file without one in its name
# still needs a default for parse_record (a malformed "date" field is still an error).
_NO_DATE = date(1970, 1, 1)
# Cells of the dense similarity block rank() holds per chunk of profiles.
_RANK_CELLS = 8_000_000
# Stored entries of the (pick x term) matrices explain() builds per chunk of profiles.
_EXPLAIN_ENTRIES = 8_000_000
_PROFILE_LISTS = ("topics", "keywords", "liked", "disliked")


class RecommendInputError(NewsletterError):
    """The inputs are malformed; ``problems`` says where (``FILE:LINE``) and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class ProfileError(ValueError):
    """One profile line is malformed; the message says why."""


@dataclass(frozen=True)
class Profile:
    """A reader's interests as given on one line of the profiles file, validated."""

    id: str
    location: str
    topics: tuple[CatalogueTopic, ...] = ()
    keywords: tuple[str, ...] = ()
    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()

    @property
    def interest_texts(self) -> tuple[str, ...]:
        """The texts the profile's interest vector is built from, each counted once."""
        texts = [topic.interest_text for topic in self.topics] + list(self.keywords)
        return tuple(dict.fromkeys(texts))


@dataclass(frozen=True)
class RecommendInputs:
    """Everything a run needs: papers to rank, background papers, profiles and warnings."""

    papers: tuple[PaperRecord, ...]
    corpus: tuple[PaperRecord, ...]
    profiles: tuple[Profile, ...]
    warnings: tuple[Problem, ...] = ()


class Pick(TypedDict):
    """One recommended paper in the output."""

    id: str
    score: float
    why: list[str]


class Recommendation(TypedDict):
    """One output line: a profile's picks, best first."""

    id: str
    papers: list[Pick]


def normalise_paper_id(value: str) -> str:
    """An arXiv id without its version suffix, as ingest stores it; other text is kept as is."""
    text = value.strip()
    match = ARXIV_ID.match(text)
    return match.group("id") if match else text


def _recency(record: PaperRecord) -> tuple[int, date]:
    # Ingest's rule: a higher arXiv version wins; without versions, the later listing.
    return (record.version or 0, record.listed_on)


def read_papers(
    papers: Path, corpus: Sequence[Path], *, problems: list[Problem]
) -> tuple[list[PaperRecord], list[PaperRecord]]:
    """Parse PAPERS and CORPUS into (papers to rank, corpus-only papers), one record per id.

    A paper listed more than once, in either kind of file, is one paper: the newest
    version's record, ranked if PAPERS lists it. Bad lines become problems.
    """
    best: dict[str, PaperRecord] = {}
    ranked: dict[str, None] = {}  # PAPERS ids in first-seen order
    for number, path in enumerate((papers, *corpus)):
        default_date = date_from_name(path) or _NO_DATE
        for location, raw in json_lines(path, problems):
            try:
                record = parse_record(raw, default_date=default_date)
            except RecordError as exc:
                problems.append(Problem(location, str(exc)))
                continue
            seen = best.get(record.external_id)
            if seen is None or _recency(record) > _recency(seen):
                best[record.external_id] = record
            if number == 0:
                ranked.setdefault(record.external_id)
    return (
        [best[paper_id] for paper_id in ranked],
        [record for paper_id, record in best.items() if paper_id not in ranked],
    )


def _string_list(raw: dict[str, Any], name: str) -> list[str]:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProfileError(f"{name!r} must be a list of strings")
    return value


def parse_profile(raw: Any, *, location: str, catalogue: dict[str, CatalogueTopic]) -> Profile:
    """Validate one decoded profile object; raise ``ProfileError`` or ``UnknownTopic``."""
    if not isinstance(raw, dict):
        raise ProfileError(f"expected a JSON object, got {type(raw).__name__}")
    profile_id = raw.get("id")
    if profile_id is None:
        raise ProfileError("missing profile 'id'")
    if not isinstance(profile_id, str):
        raise ProfileError(f"'id' must be a string, not {type(profile_id).__name__}")
    if not profile_id.strip():
        raise ProfileError("empty profile 'id'")
    lists = {name: _string_list(raw, name) for name in _PROFILE_LISTS}
    topics = {topic.id: topic for topic in (resolve_topic(catalogue, t) for t in lists["topics"])}
    keywords: dict[str, str] = {}
    for phrase in lists["keywords"]:
        text = normalise_space(phrase)
        if text:
            # The model lowercases, so "RAG" and "rag" are one interest.
            keywords.setdefault(text.casefold(), text)
    return Profile(
        id=profile_id,
        location=location,
        topics=tuple(topics.values()),
        keywords=tuple(keywords.values()),
        liked=_paper_ids(lists["liked"]),
        disliked=_paper_ids(lists["disliked"]),
    )


def _paper_ids(values: Iterable[str]) -> tuple[str, ...]:
    ids = (normalise_paper_id(value) for value in values)
    return tuple(dict.fromkeys(paper_id for paper_id in ids if paper_id))


def read_profiles(
    path: Path, *, catalogue: dict[str, CatalogueTopic], problems: list[Problem]
) -> list[Profile]:
    """Parse the profiles file in order; bad lines and repeated ids become problems."""
    profiles: list[Profile] = []
    first_seen: dict[str, str] = {}
    for location, raw in json_lines(path, problems):
        try:
            profile = parse_profile(raw, location=location, catalogue=catalogue)
        except (ProfileError, UnknownTopic) as exc:
            problems.append(Problem(location, str(exc)))
            continue
        if profile.id in first_seen:
            problems.append(
                Problem(
                    location,
                    f"duplicate profile id {profile.id!r} (first at {first_seen[profile.id]})",
                )
            )
            continue
        first_seen[profile.id] = location
        profiles.append(profile)
    return profiles


def load_inputs(
    *,
    papers: Path,
    profiles: Path,
    corpus: Sequence[Path] = (),
    catalogue: dict[str, CatalogueTopic],
) -> RecommendInputs:
    """Read and validate every input; raise ``RecommendInputError`` listing all problems.

    Feedback naming a paper in neither PAPERS nor CORPUS is dropped with a warning.
    """
    problems: list[Problem] = []
    ranked, background = read_papers(papers, corpus, problems=problems)
    parsed = read_profiles(profiles, catalogue=catalogue, problems=problems)
    if problems:
        raise RecommendInputError(problems)
    known = {record.external_id for record in (*ranked, *background)}
    warnings: list[Problem] = []
    checked: list[Profile] = []
    for profile in parsed:
        kept: dict[str, tuple[str, ...]] = {}
        for name, ids in (("liked", profile.liked), ("disliked", profile.disliked)):
            for paper_id in ids:
                if paper_id not in known:
                    warnings.append(
                        Problem(
                            profile.location,
                            f"warning: {name} paper {paper_id!r} is in neither the papers "
                            "nor the corpus; ignored",
                        )
                    )
            kept[name] = tuple(paper_id for paper_id in ids if paper_id in known)
        checked.append(replace(profile, liked=kept["liked"], disliked=kept["disliked"]))
    return RecommendInputs(
        papers=tuple(ranked),
        corpus=tuple(background),
        profiles=tuple(checked),
        warnings=tuple(warnings),
    )


def run(
    inputs: RecommendInputs,
    *,
    top: int,
    why: int = DEFAULT_WHY,
    semantic: bool | None = None,
) -> Iterator[Recommendation]:
    """Rank the papers for every profile: one ``Recommendation`` per profile, in input order.

    Liked and disliked papers are never picked; ``why`` terms explain each pick (0: none).
    ``semantic``: rank by the hybrid TF-IDF + sentence-embedding score (the semantic extra); None:
    when the extra is installed. The "why" terms come from TF-IDF either way.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if why < 0:
        raise ValueError(f"why must be non-negative, got {why}")
    profiles = inputs.profiles
    if not inputs.papers or not profiles:
        yield from _nothing(profiles)
        return
    documents = [Document(p.title, p.abstract) for p in (*inputs.papers, *inputs.corpus)]
    try:
        model, matrix = fit_transform(documents)
    except ValueError:
        # Only an empty vocabulary (every word a stop word) fails here: nothing can match.
        yield from _nothing(profiles)
        return
    row_of = {
        record.external_id: row for row, record in enumerate((*inputs.papers, *inputs.corpus))
    }
    n_papers = len(inputs.papers)
    paper_matrix = scipy.sparse.csr_matrix(matrix[:n_papers])
    interests = _interests(profiles, model)
    vectors = _with_feedback(profiles, interests=interests, papers=matrix, row_of=row_of)
    exclude = _exclusions(profiles, row_of=row_of, n_papers=n_papers)
    if _semantic(semantic):
        # Imported here: the plain install never loads the embedding stack.
        from newsletter.planning.batch_dense import dense_inputs
        from recommender.hybrid import rank_hybrid

        result = rank_hybrid(
            vectors,
            paper_matrix,
            *dense_inputs(inputs, row_of=row_of),
            k=top,
            exclude=exclude,
            chunk_size=max(1, _RANK_CELLS // n_papers),
        )
    else:
        result = rank(
            vectors,
            paper_matrix,
            k=top,
            exclude=exclude,
            chunk_size=max(1, _RANK_CELLS // n_papers),
        )
    paper_ids = [record.external_id for record in inputs.papers]
    # Only positive profile weights can make a positive contribution (paper weights are
    # never negative), so dropping the push of disliked papers changes no explanation
    # and spares explain() the work of multiplying them out.
    attracting = scipy.sparse.csr_matrix(vectors, copy=True)
    attracting.data = np.maximum(attracting.data, 0)
    attracting.eliminate_zeros()
    for start, stop in _explain_chunks(result, attracting):
        part = RankResult(indices=result.indices[start:stop], scores=result.scores[start:stop])
        reasons = (
            explain(
                attracting[start:stop],
                paper_matrix,
                part,
                feature_names=model.feature_names,
                n_terms=why,
            )
            if why
            else None
        )
        columns = part.indices.tolist()
        scores = np.round(part.scores.astype(np.float64), 4).tolist()
        for offset, profile in enumerate(profiles[start:stop]):
            picks: list[Pick] = []
            for slot, column in enumerate(columns[offset]):
                if column < 0:
                    break
                terms = list(reasons[offset][slot]) if reasons is not None else []
                picks.append({"id": paper_ids[column], "score": scores[offset][slot], "why": terms})
            yield {"id": profile.id, "papers": picks}


def _semantic(setting: bool | None) -> bool:
    from newsletter.papers.embeddings import semantic_enabled

    return semantic_enabled(setting)


def _nothing(profiles: Iterable[Profile]) -> Iterator[Recommendation]:
    for profile in profiles:
        yield {"id": profile.id, "papers": []}


def interest_index(profiles: Sequence[Profile]) -> tuple[list[str], list[int], list[int]]:
    """Each profile's interest texts as (texts, rows, cols): every distinct text once, so
    it is vectorised (TF-IDF) or embedded (semantic ranking) once."""
    text_index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for row, profile in enumerate(profiles):
        for text in profile.interest_texts:
            rows.append(row)
            cols.append(text_index.setdefault(text, len(text_index)))
    return list(text_index), rows, cols


def _interests(profiles: Sequence[Profile], model: TfidfModel) -> scipy.sparse.csr_matrix:
    """Topic and keyword vectors of every profile, each distinct text embedded once."""
    texts, rows, cols = interest_index(profiles)
    return build_profiles(
        model,
        texts=texts,
        rows=np.asarray(rows, dtype=np.int64),
        cols=np.asarray(cols, dtype=np.int64),
        weights=np.ones(len(rows)),
        n_profiles=len(profiles),
    )


def _with_feedback(
    profiles: Sequence[Profile],
    *,
    interests: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    row_of: dict[str, int],
) -> scipy.sparse.csr_matrix:
    """Interests pulled towards liked and pushed from disliked papers (no dates: age 0)."""
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for row, profile in enumerate(profiles):
        for ids, value in ((profile.liked, 1.0), (profile.disliked, -1.0)):
            for paper_id in ids:
                rows.append(row)
                cols.append(row_of[paper_id])
                values.append(value)
    return apply_feedback(
        interests,
        papers,
        rows=np.asarray(rows, dtype=np.int64),
        cols=np.asarray(cols, dtype=np.int64),
        values=np.asarray(values, dtype=np.float64),
        ages_days=np.zeros(len(rows)),
    )


def _exclusions(
    profiles: Sequence[Profile], *, row_of: dict[str, int], n_papers: int
) -> scipy.sparse.csr_matrix:
    """A (profiles x papers) mask of the papers each profile rated: never recommended."""
    rows: list[int] = []
    cols: list[int] = []
    for row, profile in enumerate(profiles):
        for paper_id in (*profile.liked, *profile.disliked):
            column = row_of[paper_id]
            if column < n_papers:
                rows.append(row)
                cols.append(column)
    return scipy.sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(profiles), n_papers)
    )


def _explain_chunks(
    result: RankResult, vectors: scipy.sparse.csr_matrix
) -> Iterator[tuple[int, int]]:
    """Profile ranges whose picks explain() expands into a bounded number of entries.

    explain() copies a profile's vector once per pick, so a chunk costs about
    sum(picks x profile terms); bounding that bounds memory whatever K is.
    """
    picks = (result.indices >= 0).sum(axis=1)
    costs = picks * np.maximum(np.diff(vectors.indptr), 1)
    start, total = 0, 0
    for row, cost in enumerate(costs.tolist()):
        if row > start and total + cost > _EXPLAIN_ENTRIES:
            yield start, row
            start, total = row, 0
        total += cost
    yield start, len(costs)


def write_jsonl(items: Iterable[Recommendation], stream: IO[bytes], *, batch: int = 256) -> int:
    """Write each item as one compact UTF-8 JSON line, in batches; return the line count."""
    count = 0
    lines: list[str] = []
    for item in items:
        lines.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        count += 1
        if len(lines) >= batch:
            stream.write(("\n".join(lines) + "\n").encode("utf-8"))
            lines.clear()
    if lines:
        stream.write(("\n".join(lines) + "\n").encode("utf-8"))
    stream.flush()
    return count
