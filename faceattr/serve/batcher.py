"""Micro-batching: images submitted from the event loop go through detection and the network
together, on one inference thread, so that concurrent requests share the network's batches and
the event loop never waits on torch.

A batch closes when it holds ``max_batch`` images, when ``max_wait_s`` has passed since its first
image, or at once when no other request is on its way (``incoming() == 0``): a lone request pays no
waiting. Images whose request has gone (timed out, client disconnected) are skipped, not computed.
Other work on the same model (Grad-CAM maps) goes through :meth:`MicroBatcher.call`: alone, between batches.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
Answer = TypeVar("Answer")


@dataclass
class _Job(Generic[Item]):
    item: Item
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class _Call:
    """Work run alone on the inference thread, between two batches (see :meth:`MicroBatcher.call`)."""

    function: Callable[[], object]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future, result: object = None, error: BaseException | None = None) -> None:
    """Resolves ``future`` unless its awaiter has given up on it (runs on the future's loop)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher(Generic[Item, Result]):
    """Runs ``process`` over batches of items submitted with :meth:`run`, on a thread of its own.

    Args:
        process: Items -> one result per item, in order; called on the batcher's thread only.
        max_batch: Most items per call of ``process``.
        max_wait_s: Longest the first item of a batch waits for more.
        incoming: How many items are on their way (admitted but not yet submitted): the batch
            waits for them only; ``None``: always wait up to ``max_wait_s``.
        on_batch: Called with each batch's size (metrics).
        setup: Called on the batcher's thread before its first batch (the service builds its
            model there); when it raises, every item is answered with its error.

    >>> async def demo():
    ...     batcher = MicroBatcher(lambda items: [2 * x for x in items], max_batch=4, max_wait_s=0.01)
    ...     batcher.start()
    ...     try:
    ...         return await asyncio.gather(*(batcher.run(x) for x in range(3)))
    ...     finally:
    ...         batcher.stop()
    >>> asyncio.run(demo())
    [0, 2, 4]
    """

    def __init__(self, process: Callable[[Sequence[Item]], Sequence[Result]], max_batch: int, max_wait_s: float,
                 incoming: Callable[[], int] | None = None, on_batch: Callable[[int], None] | None = None,
                 setup: Callable[[], None] | None = None):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch ({max_batch}) must be >= 1 and max_wait_s ({max_wait_s}) >= 0")
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.incoming = incoming
        self.on_batch = on_batch
        self.setup = setup
        self._jobs: queue.SimpleQueue[_Job[Item] | _Call | None] = queue.SimpleQueue()
        # A call met while a batch was filling: it runs right after that batch (inference thread only).
        self._held: _Call | None = None
        self._thread = threading.Thread(target=self._serve, name="faceattr-inference", daemon=True)

    def start(self) -> None:
        """Starts the inference thread."""
        self._thread.start()

    def stop(self) -> None:
        """Finishes the batches already submitted, then ends the thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    async def run(self, item: Item) -> Result:
        """The result of ``item``, computed in a batch with whatever else is submitted meanwhile.

        Raises:
            Whatever ``process`` raised for this item (when a batch fails, its items are retried
            one by one, so one bad item fails alone).
        """
        if not self._thread.is_alive():
            raise RuntimeError("the micro-batcher is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(item, future, loop))
        return await future

    async def call(self, function: Callable[[], Answer]) -> Answer:
        """``function()``, run alone on the inference thread between two batches.

        For work on the same model that cannot share a batch (the service's Grad-CAM maps: a
        forward hook and gradients): it never runs while a batch does, and is skipped when its
        awaiter has gone before its turn.

        Raises:
            Whatever ``function`` raised.
        """
        if not self._thread.is_alive():
            raise RuntimeError("the micro-batcher is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Call(function, future, loop))
        return await future

    def _serve(self) -> None:
        failure = None
        if self.setup is not None:
            try:
                self.setup()
            except Exception as error:  # noqa: BLE001 -- answered to every item: nothing can run without it
                logger.error("the micro-batcher's setup failed: %s", error)
                failure = error
        while True:
            job = self._held if self._held is not None else self._jobs.get()
            self._held = None
            if job is None:
                return
            if failure is not None:
                self._answer(job, error=failure)
                continue
            if isinstance(job, _Call):
                self._run_call(job)
                continue
            batch, stopping = self._fill([job])
            self._run_batch([job for job in batch if not job.future.done()])
            if stopping:
                return

    def _fill(self, batch: list[_Job[Item]]) -> tuple[list[_Job[Item]], bool]:
        """``batch`` topped up to ``max_batch`` within ``max_wait_s``; and whether a stop was asked."""
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            expected = self.incoming() if self.incoming is not None else self.max_batch
            wait = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=wait) if expected > 0 and wait > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            if isinstance(job, _Call):  # runs alone, once this batch is done
                self._held = job
                break
            batch.append(job)
        return batch, False

    def _run_call(self, call: _Call) -> None:
        if call.future.done():  # its request has gone
            return
        try:
            result = call.function()
        except Exception as error:  # noqa: BLE001 -- answered to its awaiter
            self._answer(call, error=error)
            return
        self._answer(call, result)

    def _run_batch(self, batch: list[_Job[Item]]) -> None:
        if not batch:
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = self.process([job.item for job in batch])
        except Exception as error:  # noqa: BLE001 -- retried one by one so that only the bad item fails
            if len(batch) == 1:
                self._answer(batch[0], error=error)
                return
            logger.warning("a batch of %d failed (%s); running its items one by one", len(batch), error)
            for job in batch:
                self._run_batch([job])
            return
        for job, result in zip(batch, results):
            self._answer(job, result)

    @staticmethod
    def _answer(job: _Job[Item] | _Call, result: object = None, error: BaseException | None = None) -> None:
        try:
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass
