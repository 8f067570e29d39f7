"""Work in blocks, on a small pool of threads: what ranking's passes share.

scipy and numpy release the GIL in the products and in the selection, so blocks of rows
run side by side; without a pool (small inputs) each runs right away, in order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

# Entries per block of the passes over all profile entries (counting terms,
# comparing rows): a block's temporary arrays are then reused from the heap
# instead of being mapped and page-faulted in anew each time.
BLOCK_NNZ = 1 << 18


def cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def each(
    pool: ThreadPoolExecutor | None, func: Callable[[_Item], None], items: Iterable[_Item]
) -> None:
    """func(item) for every item: on the pool, if any, when there is more than one."""
    todo = list(items)
    if pool is None or len(todo) == 1:
        for item in todo:
            func(item)
    else:
        # list() waits for all of them and re-raises the first exception.
        list(pool.map(func, todo))


def start(
    pool: ThreadPoolExecutor | None, func: Callable[..., _Result], *args: object
) -> Future[_Result]:
    """func(*args) on the pool, or right away without one."""
    if pool is not None:
        return pool.submit(func, *args)
    done: Future[_Result] = Future()
    done.set_result(func(*args))
    return done


def row_blocks(indptr: npt.NDArray[np.integer], n_rows: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges of about ``BLOCK_NNZ`` entries each."""
    cuts = np.searchsorted(indptr, np.arange(BLOCK_NNZ, int(indptr[n_rows]), BLOCK_NNZ))
    bounds = np.unique(np.concatenate([[0], cuts, [n_rows]]).astype(np.int64))
    return list(itertools.pairwise(bounds.tolist()))
