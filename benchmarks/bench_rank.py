"""Scale benchmark of ranking: 1,000,000 subscribers x 1,000 new papers, top-10 each.

    .venv/bin/python benchmarks/bench_rank.py [--subscribers 1000000] [--papers 1000]
        [--k 10] [--chunk 5000] [--repeat 3] [--sample 2000] [--phrase-share 0.3] [--seed 0]

Papers are real: every listing in ../shared/data/arxiv-daily/*.jsonl, de-duplicated on
id, fits the TF-IDF model; the candidates are the distinct papers of the latest listing
days (newest day first) up to --papers. Subscribers are synthetic, because no real
subscriber data exists: each holds 1-3 distinct topics of config/topics.toml, and 30%
of them (--phrase-share) also 1-2 free keyword phrases drawn from a pool of 5,000
distinct bigrams of the fitted vocabulary. rank() ranks identical profiles once, so
the share of distinct interest sets (printed) drives the time; --phrase-share 1.0 makes
nearly every profile distinct.

Figures, one line each:
- profile build (build_profiles): wall time, peak RSS while building, size of the matrix;
- ranking (rank, all subscribers at once): best wall time of --repeat runs, peak RSS
  of the process while ranking and its increase over the RSS when ranking starts;
- the baseline of the same run: one subscriber at a time (sparse row times papers.T,
  full argsort), timed on --sample subscribers and scaled, and the ratio against it.

With the semantic extra installed (issue 8; --no-semantic skips it): embedding the
candidates with MiniLM (in a spawned process, so torch stays out of this one) against
TF-IDF's transform of the same papers; the dense profiles (float16); and rank_hybrid on
the same subscribers, as ratios against the TF-IDF ranking above.

Peak RSS per phase is read from VmHWM in /proc/self/status after resetting it through
/proc/self/clear_refs (Linux); resource.getrusage's ru_maxrss is printed as well. The
machine's load average is printed before and after: other processes on the 2 cores
slow ranking down, and the CPU time of the best run shows how many cores it got.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse
import threadpoolctl

from recommender import Document, TfidfModel, build_profiles, fit_transform, rank, semantic
from recommender.hybrid import HybridWeights, rank_hybrid

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily"
TOPICS_FILE = REPO / "config" / "topics.toml"
TARGET_SECONDS = 5.0
TARGET_BYTES = 1.5e9
# Issue 8, the semantic extra: hybrid ranking and embedding new papers.
HYBRID_TARGET_SECONDS = 15.0
HYBRID_TARGET_BYTES = 3e9
EMBED_TARGET_SECONDS = 60.0
DENSE_BUILD_CHUNK = 100_000
PHRASE_POOL = 5000
PHRASE_SHARE = 0.3
MAX_INTERESTS = 5
MIB = 1024 * 1024


# -- memory -----------------------------------------------------------------------------


def _status_bytes(field: str) -> int | None:
    """A VmRSS/VmHWM figure of this process in bytes, None where /proc is not there."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def ru_maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def rss_bytes() -> int:
    return _status_bytes("VmRSS") or 0


def peak_rss_bytes() -> int:
    return _status_bytes("VmHWM") or ru_maxrss_bytes()


def load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def matrix_bytes(matrix: scipy.sparse.csr_matrix) -> int:
    return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)


# -- inputs -----------------------------------------------------------------------------


def load_papers(data_dir: Path) -> tuple[list[str], dict[str, Document], list[Path]]:
    """Every distinct paper, newest listing first, and the listing files read."""
    files = sorted(data_dir.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no listings found in {data_dir}")
    order: list[str] = []
    docs: dict[str, Document] = {}
    # Newest first: a re-listed paper keeps its latest title and abstract, and its
    # position is that of the latest day it was listed on.
    for path in reversed(files):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                if record["id"] not in docs:
                    docs[record["id"]] = Document(record["title"], record["summary"])
                    order.append(record["id"])
    return order, docs, files


def candidate_days(order: list[str], n_papers: int, files: list[Path]) -> str:
    """Which listing days the first n_papers (newest first) come from."""
    wanted = set(order[:n_papers])
    days = []
    for path in reversed(files):
        with path.open(encoding="utf-8") as lines:
            ids = {json.loads(line)["id"] for line in lines if line.strip()}
        if ids & wanted:
            days.append(path.stem)
            wanted -= ids
        if not wanted:
            break
    return f"{days[-1]} .. {days[0]}" if days else "none"


def topic_texts(path: Path) -> list[str]:
    """The interest text of every catalogue topic: name, description and keywords."""
    with path.open("rb") as handle:
        topics = tomllib.load(handle)["topics"]
    return [" ".join([t["name"], t["description"], *t.get("keywords", [])]) for t in topics]


def phrase_pool(model: TfidfModel, size: int, rng: np.random.Generator) -> list[str]:
    """Distinct bigrams of the fitted vocabulary: the free keywords subscribers type."""
    names = model.feature_names
    bigrams = names[np.char.find(names, " ") >= 0]
    chosen = rng.choice(len(bigrams), size=min(size, len(bigrams)), replace=False)
    return [str(phrase) for phrase in bigrams[np.sort(chosen)]]


def synthetic_interests(
    n_subscribers: int,
    n_topics: int,
    n_phrases: int,
    rng: np.random.Generator,
    phrase_share: float = PHRASE_SHARE,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(rows, cols, weights) of build_profiles: 1-3 distinct topics each, and for a
    phrase_share of the subscribers 1-2 phrases (text index n_topics + phrase index)."""
    per_topic = rng.integers(1, 4, size=n_subscribers)
    # Distinct topics per subscriber: the first per_topic of a random permutation.
    permutation = np.argsort(rng.random((n_subscribers, n_topics)), axis=1)[:, :3]
    keep = np.arange(3)[None, :] < per_topic[:, None]
    topic_rows = np.nonzero(keep)[0]
    topic_cols = permutation[keep]
    with_phrases = np.nonzero(rng.random(n_subscribers) < phrase_share)[0]
    per_phrase = rng.integers(1, 3, size=len(with_phrases))
    phrase_rows = np.repeat(with_phrases, per_phrase)
    phrase_cols = n_topics + rng.integers(0, n_phrases, size=len(phrase_rows))
    rows = np.concatenate([topic_rows, phrase_rows]).astype(np.int64)
    cols = np.concatenate([topic_cols, phrase_cols]).astype(np.int64)
    return rows, cols, np.ones(len(rows))


def distinct_interest_sets(rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> int:
    """How many different interest sets the subscribers hold (equal sets, equal profiles)."""
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, rows)
    padded = np.full((int(rows.max(initial=-1)) + 1, MAX_INTERESTS), -1, dtype=np.int64)
    padded[rows, np.arange(len(rows)) - starts] = cols
    return len(np.unique(padded, axis=0))


# -- measurements -----------------------------------------------------------------------


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def naive_loop(
    profiles: scipy.sparse.csr_matrix, papers: scipy.sparse.csr_matrix, rows: range, k: int
) -> npt.NDArray[np.int64]:
    """The obvious way: one subscriber at a time, a sparse row times papers.T, full sort."""
    papers_t = papers.T.tocsc()
    picks = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        scores = (profiles[row] @ papers_t).toarray().ravel()
        order = np.argsort(-scores, kind="stable")[:k]
        good = order[scores[order] > 0]
        picks[i, : len(good)] = good
    return picks


def blas_lines() -> list[str]:
    lines = []
    for pool in threadpoolctl.threadpool_info():
        lines.append(
            f"  {pool.get('user_api')}: {pool.get('internal_api')} {pool.get('version')}, "
            f"{pool.get('num_threads')} threads, arch {pool.get('architecture', '-')}, "
            f"{Path(str(pool.get('filepath'))).name}"
        )
    return lines


def _embed_in_child(
    docs: list[Document], texts: list[str]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float, float]:
    """In a spawned process (torch stays out of the measured one): load the model, then
    embed the new papers (timed) and the interest texts."""
    load_s, encoder = timed(semantic.load_encoder)
    papers_s, vectors = timed(lambda: encoder.encode_documents(docs))
    return vectors, encoder.encode_interests(texts), papers_s, load_s


def dense_profiles_chunked(
    interests: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
    text_vectors: npt.NDArray[np.float32],
    n_profiles: int,
) -> npt.NDArray[np.float16]:
    """Dense profiles (normalised weighted sums of interest vectors), float16, in chunks."""
    rows, cols, weights = interests
    matrix = scipy.sparse.csr_matrix(
        (weights.astype(np.float32), (rows, cols)), shape=(n_profiles, len(text_vectors))
    )
    out = np.empty((n_profiles, text_vectors.shape[1]), dtype=np.float16)
    for start in range(0, n_profiles, DENSE_BUILD_CHUNK):
        stop = min(start + DENSE_BUILD_CHUNK, n_profiles)
        out[start:stop] = semantic.normalise(np.asarray(matrix[start:stop] @ text_vectors))
    return out


def hybrid_figures(
    args: argparse.Namespace,
    *,
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    interests: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
    texts: list[str],
    candidate_docs: list[Document],
    tfidf: tuple[float, int, float],
    tfidf_result: Any,
) -> None:
    """Issue 8: embed the new papers (spawned process), then rank with the hybrid."""
    import multiprocessing

    rank_s, rank_peak, tfidf_embed_s = tfidf
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        paper_vectors, text_vectors, embed_s, load_s = pool.apply(
            _embed_in_child, (candidate_docs, texts)
        )
    n = len(candidate_docs)
    print(
        f"embedding {n} new papers ({semantic.MODEL_VERSION}): {embed_s:.1f} s "
        f"({n / embed_s:.1f} papers/s; model load {load_s:.1f} s more) vs TF-IDF transform "
        f"{tfidf_embed_s:.2f} s = {embed_s / tfidf_embed_s:.0f}x; target <= "
        f"{EMBED_TARGET_SECONDS:.0f} s: {'met' if embed_s <= EMBED_TARGET_SECONDS else 'MISSED'}"
    )
    build_s, dense = timed(
        lambda: dense_profiles_chunked(interests, text_vectors, args.subscribers)
    )
    print(
        f"dense profile build: {build_s:.2f} s, {args.subscribers:,} x {dense.shape[1]} float16, "
        f"{gb(dense.nbytes)}"
    )
    gc.collect()
    reset_peak_rss()
    rss_start = rss_bytes()
    weights = HybridWeights()
    # Issue 16, third pass: the density penalty (one (papers x papers) product per call)
    # against the same weights without it (the second pass), interleaved in the same run.
    before = replace(weights, dense_density=0.0)
    times: list[float] = []
    before_times: list[float] = []
    result = None
    for _ in range(max(args.repeat, 1)):
        for setting, into in ((before, before_times), (weights, times)):
            del result
            elapsed, result = timed(
                functools.partial(
                    rank_hybrid,
                    profiles,
                    papers,
                    dense,
                    paper_vectors,
                    k=args.k,
                    weights=setting,
                    chunk_size=args.chunk,
                )
            )
            into.append(elapsed)
    assert result is not None
    peak = peak_rss_bytes()
    best = min(times)
    same_top = float((result.indices[:, 0] == tfidf_result.indices[:, 0]).mean())
    print(
        f"hybrid ranking ({weights}): {best:.2f} s best "
        f"of {len(times)} ({', '.join(f'{t:.2f}' for t in times)} s) = {best / rank_s:.2f}x "
        f"the TF-IDF ranking ({rank_s:.2f} s); peak RSS {gb(peak)} (+{gb(peak - rss_start)} "
        f"over {gb(rss_start)}) = {peak / rank_peak:.2f}x TF-IDF's {gb(rank_peak)}; "
        f"top pick unchanged for {same_top:.0%} of subscribers"
    )
    print(
        f"hybrid without the density penalty (issue 16's second pass): "
        f"{min(before_times):.2f} s best ({', '.join(f'{t:.2f}' for t in before_times)} s); "
        f"with it / without = {best / min(before_times):.2f}x"
    )
    print(
        f"target hybrid <= {HYBRID_TARGET_SECONDS:.0f} s: "
        f"{'met' if best <= HYBRID_TARGET_SECONDS else 'MISSED'}; peak RSS <= "
        f"{gb(HYBRID_TARGET_BYTES)}: {'met' if peak <= HYBRID_TARGET_BYTES else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="ranking runs; the best counts")
    parser.add_argument("--sample", type=int, default=2000, help="subscribers in the loop")
    parser.add_argument(
        "--phrase-share",
        type=float,
        default=PHRASE_SHARE,
        help="share of subscribers with free phrases (1.0: nearly all profiles distinct)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-semantic", action="store_true", help="skip the hybrid figures (issue 8)"
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"cpus: {os.cpu_count()}, load average at start: {load_average()}")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS"):
        print(f"  {name}={os.environ.get(name, '(unset)')}")
    print("threadpoolctl.threadpool_info():")
    for line in blas_lines():
        print(line)
    print("  (rank() itself calls no BLAS: its products are scipy's sparse kernels)")

    # Papers: fit on every listing, rank the newest ones.
    order, docs, files = load_papers(args.data)
    corpus = [docs[paper_id] for paper_id in order]
    start = time.perf_counter()
    model, matrix = fit_transform(corpus)
    fit_s = time.perf_counter() - start
    n_papers = min(args.papers, len(order))
    papers = scipy.sparse.csr_matrix(matrix[:n_papers])
    print(
        f"corpus: {len(files)} listing files, {len(order)} distinct papers, "
        f"{model.n_features} features, fitted in {fit_s:.1f} s"
    )
    print(
        f"candidates: the {n_papers} newest distinct papers, listings "
        f"{candidate_days(order, n_papers, files)} (newest first), "
        f"{papers.nnz / n_papers:.0f} terms per paper"
    )

    # Subscribers.
    rng = np.random.default_rng(args.seed)
    topics = topic_texts(TOPICS_FILE)
    phrases = phrase_pool(model, PHRASE_POOL, rng)
    rows, cols, weights = synthetic_interests(
        args.subscribers, len(topics), len(phrases), rng, args.phrase_share
    )
    n_with_phrases = len(np.unique(rows[cols >= len(topics)]))
    n_distinct = distinct_interest_sets(rows, cols)
    print(
        f"subscribers: {args.subscribers:,} synthetic, {len(topics)} catalogue topics, "
        f"{len(phrases)} phrases in the pool, {n_with_phrases:,} subscribers with phrases, "
        f"{len(rows) / max(args.subscribers, 1):.2f} interests each, "
        f"{n_distinct:,} distinct interest sets ({n_distinct / max(args.subscribers, 1):.1%})"
    )

    reset_peak_rss()
    rss_before = rss_bytes()
    start = time.perf_counter()
    profiles = build_profiles(
        model,
        texts=[*topics, *phrases],
        rows=rows,
        cols=cols,
        weights=weights,
        n_profiles=args.subscribers,
    )
    build_s = time.perf_counter() - start
    build_peak = peak_rss_bytes()
    print(
        f"profile build: {build_s:.2f} s, peak RSS {gb(build_peak)} "
        f"(+{gb(build_peak - rss_before)} over {gb(rss_before)} before), matrix "
        f"{profiles.shape[0]:,} x {profiles.shape[1]:,}, {profiles.nnz:,} nonzeros "
        f"({profiles.nnz / max(profiles.shape[0], 1):.0f} per row), "
        f"{gb(matrix_bytes(profiles))}"
    )

    candidate_docs = corpus[:n_papers]
    start = time.perf_counter()
    model.transform_documents(candidate_docs)
    tfidf_embed_s = time.perf_counter() - start
    texts = [*topics, *phrases]
    # What ranking does not need goes before it is measured.
    del model, matrix, corpus, docs, phrases
    gc.collect()

    # Ranking: the best of --repeat runs; the peak covers all of them.
    reset_peak_rss()
    rss_start = rss_bytes()
    times: list[float] = []
    cpu_times: list[float] = []
    result = None
    for _ in range(max(args.repeat, 1)):
        del result
        cpu_start = time.process_time()
        elapsed, result = timed(lambda: rank(profiles, papers, k=args.k, chunk_size=args.chunk))
        cpu_times.append(time.process_time() - cpu_start)
        times.append(elapsed)
    assert result is not None
    rank_peak = peak_rss_bytes()
    best = int(np.argmin(times))
    rank_s = times[best]
    print(
        f"ranking: {rank_s:.2f} s best of {len(times)}, median {float(np.median(times)):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times)} s), {args.subscribers:,} x {n_papers} "
        f"top-{args.k}, chunk {args.chunk}; CPU {cpu_times[best]:.2f} s in that run "
        f"({cpu_times[best] / rank_s:.2f} cores busy)"
    )
    print(
        f"ranking peak RSS: {gb(rank_peak)} (process, VmHWM reset when ranking starts), "
        f"+{gb(rank_peak - rss_start)} over {gb(rss_start)} at the start "
        f"(profiles {gb(matrix_bytes(profiles))}, result "
        f"{gb(result.indices.nbytes + result.scores.nbytes)})"
    )
    print(f"ru_maxrss (whole process since the last reset): {gb(ru_maxrss_bytes())}")

    # Baseline: one subscriber at a time, on a sample, scaled.
    sample = range(min(args.sample, args.subscribers))
    loop_s, loop_picks = timed(lambda: naive_loop(profiles, papers, sample, args.k))
    loop_scaled = loop_s * args.subscribers / max(len(sample), 1)
    agree = int((loop_picks == result.indices[: len(sample)]).all(axis=1).sum())
    print(
        f"naive loop: {loop_s:.2f} s for {len(sample):,} subscribers -> "
        f"{loop_scaled:.0f} s scaled to {args.subscribers:,}; ranking is "
        f"{loop_scaled / rank_s:.0f}x faster"
    )
    print(f"agreement with the loop on the sample: {agree}/{len(sample)} rows identical")
    print(
        f"profile build vs ranking: {build_s / rank_s:.2f}x the ranking time; "
        f"peak RSS of the build {build_peak / rank_peak:.2f}x that of ranking"
    )
    print(
        f"per distinct profile: {rank_s / max(n_distinct, 1) * 1e6:.1f} us "
        "(rank() ranks identical profile rows once)"
    )
    print(f"load average at the end: {load_average()} (other processes share the 2 cores)")
    if not args.no_semantic and semantic.available():
        hybrid_figures(
            args,
            profiles=profiles,
            papers=papers,
            interests=(rows, cols, weights),
            texts=texts,
            candidate_docs=candidate_docs,
            tfidf=(rank_s, rank_peak, tfidf_embed_s),
            tfidf_result=result,
        )
    elif not args.no_semantic:
        print("semantic extra not installed: no hybrid figures (pip install '.[semantic]')")
    time_ok = rank_s <= TARGET_SECONDS
    rss_ok = rank_peak <= TARGET_BYTES
    print(
        f"target ranking <= {TARGET_SECONDS:.0f} s: {'met' if time_ok else 'MISSED'} "
        f"({rank_s:.2f} s, {rank_s / TARGET_SECONDS:.2f}x the budget)"
    )
    print(
        f"target ranking peak RSS <= {gb(TARGET_BYTES)}: {'met' if rss_ok else 'MISSED'} "
        f"({gb(rank_peak)}, {rank_peak / TARGET_BYTES:.2f}x the budget)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
