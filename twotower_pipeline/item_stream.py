"""Re-embedding the catalogue as a stream of chunks, the stages overlapping.

    reader thread       chunks of videos from PostgreSQL, columnar (app_data.catalogue_tables)
    feature workers     a chunk's rows, cleaned text and item-tower inputs, one process per core
    this thread         ONNX Runtime on a chunk's inputs
    writer thread       binary COPY of a chunk's vectors into the version's partition

Memory holds a few chunks, never the catalogue. Everything that makes a Python object per video
(the chunk's rows, tokenising titles and descriptions) runs in the worker processes; this process
only moves Arrow tables, arrays and bytes (ONNX Runtime, the Arrow read and the COPY release the
interpreter while they work). A small read (a shard of a small catalogue, a
top-up of new videos) never starts the processes (see _IN_PROCESS_CHUNKS).

The inputs are :func:`serving_path.item_inputs`' (the same functions, chunk by chunk): what the
run's evaluation ranks with is what is written.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from twotower_pipeline.app_data import catalogue_frame
from twotower_pipeline.model.features import FeatureSpec, item_features
from twotower_pipeline.model.serving_path import shares_of
from twotower_pipeline.validation import clean_catalogue

_QUEUE_DEPTH = 2  # chunks waiting between the reader and the features, and before the writer


def feature_workers() -> int:
    """Processes for the feature preparation: one per core this process may run on."""
    return len(os.sched_getaffinity(0))


# -- feature preparation, here or in a worker process ------------------------------------------------
@dataclass(frozen=True)
class PreparedChunk:
    ids: np.ndarray  # the videos to write (object array of ids)
    inputs: dict[str, np.ndarray]  # their item-tower inputs
    popularity: np.ndarray  # their popularity for the cold-start order (float32)
    read: dict[str, int]  # videos read, per shard
    skipped: dict[str, int]  # of those, already embedded (a top-up), per shard
    seconds: float


@dataclass
class ChunkPreparation:
    """What turns a chunk of the catalogue as read (Arrow) into the rows to write: the version's
    feature spec (as JSON, parsed once per process), the moment, the popularity inputs and popularity
    of every liked video, and (a top-up) the videos already embedded, which are skipped."""

    spec_json: str
    as_of: pd.Timestamp
    shares: pd.Series
    popularity: pd.Series
    done: frozenset[str] | None = None
    _spec: FeatureSpec | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_spec": None}

    def prepare(self, table: pa.Table) -> PreparedChunk:
        started = time.perf_counter()
        if self._spec is None:
            self._spec = FeatureSpec.from_json(self.spec_json)
        frame = catalogue_frame(table)
        read = _per_shard(frame["id"])
        skipped: dict[str, int] = {}
        if self.done is not None:
            new = ~frame["id"].isin(self.done)
            skipped = _per_shard(frame["id"][~new])
            frame = frame[new].reset_index(drop=True)
        inputs = item_features(self._spec, clean_catalogue(frame), shares_of(self.shares, frame["id"]), self.as_of)
        return PreparedChunk(frame["id"].to_numpy(), inputs,
                             shares_of(self.popularity, frame["id"]).astype(np.float32), read, skipped,
                             time.perf_counter() - started)


def _per_shard(ids: pd.Series) -> dict[str, int]:
    return ids.str[0].value_counts().to_dict() if len(ids) else {}  # a video's shard: its id's first hex digit


_worker_preparation: ChunkPreparation | None = None


def _start_worker(preparation: ChunkPreparation) -> None:
    global _worker_preparation
    _worker_preparation = preparation


def _prepare_in_worker(table: pa.Table) -> PreparedChunk:
    assert _worker_preparation is not None, "a feature worker starts with the run's preparation"
    return _worker_preparation.prepare(table)


_IN_PROCESS_CHUNKS = 3
"""Chunks prepared in this process before the workers take over. Starting them took 11 s (each
imports pandas, scikit-learn, pyarrow; 2 cores shared with other work), more than they save on a
catalogue of a few chunks: the workers start while the third chunk is prepared here, and a read of
up to two chunks (50,000 videos) never starts them."""


def _ready() -> int:
    return os.getpid()


class FeaturePool:
    """Prepares chunks: the first ones in this process, later ones in ``workers`` processes (none
    when ``workers`` is 1)."""

    def __init__(self, preparation: ChunkPreparation, workers: int) -> None:
        self.preparation, self.workers = preparation, max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._chunks = 0

    def submit(self, table: pa.Table) -> Future:
        self._chunks += 1
        if self.workers > 1 and self._chunks == _IN_PROCESS_CHUNKS:
            # forkserver: workers never inherit this process's threads (ONNX Runtime's, the reader's).
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=_start_worker, initargs=(self.preparation,))
            for _ in range(self.workers):
                self._pool.submit(_ready)  # they start now, while this chunk is prepared here
        if self._pool is None or self._chunks <= _IN_PROCESS_CHUNKS:
            done: Future = Future()
            done.set_result(self.preparation.prepare(table))
            return done
        return self._pool.submit(_prepare_in_worker, table)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# -- the stages around it ---------------------------------------------------------------------------
class _Stop(Exception):
    """The other side of a queue stopped (an error there, or no more chunks)."""


_END = object()


def read_ahead(chunks: Iterator[pd.DataFrame], seconds: dict[str, float]) -> Iterator[pd.DataFrame]:
    """``chunks`` produced by a thread, up to _QUEUE_DEPTH ahead of the consumer; the thread's time
    producing them is added to ``seconds["read"]``. An error in the thread is raised here."""
    handoff: queue.Queue = queue.Queue(_QUEUE_DEPTH)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                started = time.perf_counter()
                chunk = next(chunks, _END)
                seconds["read"] = seconds.get("read", 0.0) + time.perf_counter() - started
                _put(handoff, chunk, stop)
                if chunk is _END:
                    return
        except _Stop:
            return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            _put(handoff, error, stop)

    thread = threading.Thread(target=produce, name="catalogue-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a generator's connection is closed now, not when it is collected


def _put(handoff: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            handoff.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class BackgroundWriter:
    """Runs ``write(chunks)`` in a thread, where ``chunks`` yields what :meth:`put` is given until
    :meth:`finish`; an error there is raised by the next put or by finish. :meth:`abort` makes the
    writer fail (so its transaction rolls back) and waits for it."""

    def __init__(self, write: Callable[[Iterator[tuple]], int], seconds: dict[str, float]) -> None:
        self._handoff: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._seconds = seconds
        self._result: list[int] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(write,), name="vector-writer", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[tuple]:
        while True:
            item = self._handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            started = time.perf_counter()
            yield item
            self._seconds["write"] = self._seconds.get("write", 0.0) + time.perf_counter() - started

    def _run(self, write: Callable[[Iterator[tuple]], int]) -> None:
        try:
            self._result.append(write(self._chunks()))
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
            self._error.append(error)
        finally:
            self._stop.set()

    def put(self, chunk: tuple) -> None:
        try:
            _put(self._handoff, chunk, self._stop)
        except _Stop:
            self._thread.join()
            raise self._error[0] if self._error else RuntimeError("the vector writer stopped early") from None

    def finish(self) -> int:
        self.put(_END)
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._result[0]

    def abort(self) -> None:
        if not self._stop.is_set():
            try:
                _put(self._handoff, _Aborted("the re-embed failed before every chunk was written"), self._stop)
            except _Stop:
                pass
        self._thread.join()


class _Aborted(RuntimeError):
    """Raised inside the writer so that its transaction rolls back."""


# -- per-shard figures, accumulated chunk by chunk --------------------------------------------------
@dataclass
class ShardTally:
    read: int = 0
    written: int = 0
    skipped: int = 0
    norm_min: float = float("inf")
    norm_sum: float = 0.0
    norm_max: float = 0.0


class ShardTallies:
    def __init__(self, shards: Sequence[str]) -> None:
        self.tallies = {shard: ShardTally() for shard in shards}

    def count(self, chunk: PreparedChunk, vectors: np.ndarray) -> None:
        for what, counts in (("read", chunk.read), ("skipped", chunk.skipped)):
            for shard, n in counts.items():
                tally = self.tallies.setdefault(shard, ShardTally())
                setattr(tally, what, getattr(tally, what) + int(n))
        if not len(chunk.ids):
            return
        norms = np.linalg.norm(vectors, axis=1)
        shard_of = np.asarray(chunk.ids, dtype=str).astype("U1")
        for shard in np.unique(shard_of):
            part = norms[shard_of == shard]
            tally = self.tallies.setdefault(str(shard), ShardTally())
            tally.written += len(part)
            tally.norm_min = min(tally.norm_min, float(part.min()))
            tally.norm_max = max(tally.norm_max, float(part.max()))
            tally.norm_sum += float(part.sum())
