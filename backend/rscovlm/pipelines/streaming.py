"""Keep the engine busy: inputs are prepared ahead, requests stay in flight, answers come as they finish.

A loop over batches waits for the slowest answer of each batch and never reads while the
model works. Here, reader threads prepare the next inputs (reading a tile and resizing it
costs more than sending it), up to ``engine.batch_size * engine.concurrency`` requests
are in flight (one batched call for a model in this process, many single requests for a
server with continuous batching), and each answer is handed back as soon as it exists,
in whatever order answers complete. Work can be added while iterating (a tile split
into sub-tiles), and memory stays bounded: at most the in-flight requests and a fixed
read-ahead exist at once.

An engine that batches rows in lockstep (transformers) may hand back some answers
paused, to make room while inputs wait: the stream puts those first into the next
batch, so a long answer continues beside fresh tiles instead of holding its batch.
Only whole answers are handed out.

The stream knows nothing about rasters or detection: a key names a piece of work and
``prepare(key)`` turns it into a conversation (or None: nothing to ask).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from ..engines.base import Answer, Conversation
from ..errors import CancelledError, EngineUnavailableError

#: Inputs prepared ahead of the requests in flight, as a multiple of them.
READ_AHEAD_FACTOR = 2


@dataclass(frozen=True)
class Outcome:
    """What became of one key: an answer, nothing to ask (``skipped``), or a failure."""

    key: Hashable
    answer: Answer | None = None
    skipped: bool = False
    error: str | None = None  # the engine's sentence when it gave up on this request
    input: Any = None  # what prepare() returned besides the conversation (e.g. the image size)


Prepare = Callable[[Any], "tuple[Conversation, Any] | None"]


@dataclass(frozen=True)
class _Work:
    """A prepared request, and the paused answer it continues, if any."""

    key: Hashable
    conversation: Conversation
    input: Any
    paused: Answer | None = None


class AnswerStream:
    """Feed keys in with :meth:`put`, iterate to get :class:`Outcome` objects as they finish."""

    def __init__(
        self,
        engine: Any,
        prepare: Prepare,
        *,
        max_new_tokens: int,
        should_cancel: Callable[[], bool] | None = None,
        readers: int = 2,
        max_in_flight: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.engine = engine
        self.prepare = prepare
        self.max_new_tokens = max_new_tokens
        self.should_cancel = should_cancel or (lambda: False)
        self.batch_size = max(1, int(batch_size or getattr(engine, "batch_size", 1)))
        calls = max(1, int(getattr(engine, "concurrency", 1)))
        if max_in_flight is not None:
            calls = max(1, min(calls, int(max_in_flight) // self.batch_size or 1))
        self.calls = calls
        self.readers = max(1, int(readers))
        self.read_ahead = READ_AHEAD_FACTOR * self.batch_size * self.calls
        self._pending: collections.deque = collections.deque()

    @property
    def in_flight_limit(self) -> int:
        return self.batch_size * self.calls

    def put(self, key: Hashable) -> None:
        """Queue a piece of work (may be called between iterations)."""
        self._pending.append(key)

    def __iter__(self) -> Iterator[Outcome]:
        read_pool = cf.ThreadPoolExecutor(self.readers, thread_name_prefix="rscovlm-read")
        call_pool = cf.ThreadPoolExecutor(self.calls, thread_name_prefix="rscovlm-ask")
        reading: dict[cf.Future, Hashable] = {}
        asking: dict[cf.Future, list[_Work]] = {}
        ready: list[_Work] = []

        def work_waiting() -> bool:  # asked by the engine, from its thread
            return bool(ready or reading or self._pending)
        try:
            while self._pending or reading or ready or asking:
                if self.should_cancel():
                    raise CancelledError("cancelled")
                while self._pending and len(reading) + len(ready) < self.read_ahead:
                    key = self._pending.popleft()
                    reading[read_pool.submit(self.prepare, key)] = key
                # A partial batch waits for the reads that could fill it, unless none remain.
                while ready and len(asking) < self.calls and (
                    len(ready) >= self.batch_size or not (reading or self._pending)
                ):
                    batch, ready = ready[: self.batch_size], ready[self.batch_size:]
                    future = call_pool.submit(
                        self.engine.generate, [w.conversation for w in batch], self.max_new_tokens,
                        self.should_cancel, resume=[w.paused for w in batch], work_waiting=work_waiting,
                    )
                    asking[future] = batch
                if not (reading or asking):
                    continue
                done, _ = cf.wait([*reading, *asking], timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if future in reading:
                        key = reading.pop(future)
                        prepared = future.result()  # a read error (bad raster) ends the run
                        if prepared is None:
                            yield Outcome(key, skipped=True)
                        else:
                            conversation, extra = prepared
                            ready.append(_Work(key, conversation, extra))
                    else:
                        batch = asking.pop(future)
                        try:
                            answers = future.result()
                        except EngineUnavailableError as exc:
                            for work in batch:
                                yield Outcome(work.key, error=str(exc), input=work.input)
                            continue
                        paused = [_Work(w.key, w.conversation, w.input, a) for w, a in zip(batch, answers) if a.paused]
                        ready[:0] = paused  # the oldest work goes first
                        for work, answer in zip(batch, answers):
                            if not answer.paused:
                                yield Outcome(work.key, answer=answer, input=work.input)
        finally:
            # A model in this process must be idle before anything else may call it, and
            # its calls stop within a token once cancelled; a server's requests are
            # abandoned (each closes its connection at its next event, so the server aborts it).
            read_pool.shutdown(wait=True, cancel_futures=True)
            call_pool.shutdown(wait=self.calls == 1, cancel_futures=True)
