"""Adaptive micro-batching: concurrent ``/predict`` requests answered by one model call.

Each request hands its raw body to :meth:`PredictBatcher.submit` and awaits its answer. One predict thread
takes every request waiting at that moment (up to :data:`MAX_BATCH_BYTES` of bodies), parses and validates
each on its own (a bad trip fails only its own request, with the 4xx naming the field), predicts all their
trips in one call, and hands each request its share. Nothing waits for a batch to fill: an idle service
answers a lone request at once, and a busy one batches whatever arrived while it was predicting (as MLServer
and BentoML do with adaptive batching). The event loop never runs parsing or prediction, so it stays free to
accept connections and enforce the body deadlines.

The model is asked of the holder once per batch (so a hot swap applies from the next batch, and a batch's
requests all name the version that answered them). A model the compiled path covers
(:mod:`tripduration.prediction.compiled`, checked against ``model.predict`` on probe trips when it is loaded)
is run through it; any other through ``model.predict`` on the canonical frame. Batches of fewer than
:data:`~tripduration.prediction.forest.ROWS_PER_THREAD` trips run on one thread: OpenMP's default of one
thread per CPU makes a one-row ``predict`` 10x slower on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from tripduration.prediction.compiled import CompiledPipeline, TripArrays, compile_pipeline, verify
from tripduration.prediction.forest import ROWS_PER_THREAD, UnsupportedModelError
from tripduration.runtime.threads import usable_cpus
from tripduration.service.codec import dumps, loads, prediction_body
from tripduration.service.holder import Loaded, ModelHolder
from tripduration.service.metrics import Metrics
from tripduration.service.schemas import InputError, Trip, to_frame, validate_trips

log = logging.getLogger("tripduration.service")

#: a batch takes waiting requests until their bodies add up to this (at least one request)
MAX_BATCH_BYTES = 2_000_000
NO_MODEL = "no production model is registered yet"


@dataclass
class Reply:
    status: int
    body: bytes


@dataclass
class _Job:
    body: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Reply]
    trips: list[Trip] = field(default_factory=list)
    reply: Reply | None = None
    error: BaseException | None = None


class ModelRunner:
    """Predicts with the holder's current model: compiled when it can be, else ``model.predict``."""

    def __init__(self) -> None:
        self._model: Any = None
        self._compiled: CompiledPipeline | None = None
        self._threads = ThreadpoolController()
        self.cpus = usable_cpus()

    def prepare(self, loaded: Loaded) -> CompiledPipeline | None:
        """Compile ``loaded.model`` once (and check it against ``model.predict``); None when not covered."""
        if loaded.model is self._model:
            return self._compiled
        version = loaded.metadata.get("version")
        try:
            compiled = compile_pipeline(loaded.model)
            worst = verify(compiled, loaded.model)
        except UnsupportedModelError as exc:
            log.info("serving %s with model.predict (not compiled: %s)", version, exc)
            compiled = None
        except Exception as exc:  # compiling is an optimisation: whatever goes wrong, model.predict still serves
            log.warning("serving %s with model.predict (compiling failed: %s: %s)", version, type(exc).__name__, exc)
            compiled = None
        else:
            log.info("serving %s compiled (largest difference on the probe trips: %g)", version, worst)
        self._model, self._compiled = loaded.model, compiled
        return compiled

    def predict(self, loaded: Loaded, groups: Sequence[list[Trip]]) -> list[np.ndarray]:
        """Predicted minutes for each group of trips (one model call for all)."""
        sizes = [len(g) for g in groups]
        compiled = self.prepare(loaded)
        threads = self.cpus if sum(sizes) >= 2 * ROWS_PER_THREAD else 1
        if compiled is not None:
            minutes = compiled.predict(TripArrays.concat([TripArrays.from_trips(g) for g in groups]), threads)
        else:
            frame = to_frame([trip for group in groups for trip in group])
            with self._threads.limit(limits=threads, user_api="openmp"):
                minutes = np.asarray(loaded.model.predict(frame), dtype=np.float64)
        return np.split(minutes, np.cumsum(sizes)[:-1])


class PredictBatcher:
    """Queue of ``/predict`` bodies served by one predict thread, batch by batch."""

    def __init__(self, holder: ModelHolder, metrics: Metrics, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.holder, self.metrics, self.max_batch_bytes = holder, metrics, max_batch_bytes
        self.runner = ModelRunner()
        self._pending: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def warm(self) -> None:
        """Load and compile the production model now rather than on the first request."""
        loaded = self.holder.get()
        if loaded is not None:
            self.runner.prepare(loaded)

    async def submit(self, body: bytes) -> Reply:
        """The answer to one ``/predict`` body (an unexpected error is raised, for the 500 handler)."""
        loop = asyncio.get_running_loop()
        job = _Job(body, loop, loop.create_future())
        with self._wake:
            if self._closed:
                raise RuntimeError("the service is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="predict", daemon=True)
                self._thread.start()
            self._pending.append(job)
            self._wake.notify()
        return await job.future

    def close(self) -> None:
        """Stop the predict thread once the requests already queued are answered."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    # ------------------------------------------------------------------ the predict thread
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                jobs = self._take()
            try:
                self._serve(jobs)
            except BaseException as exc:  # never leave a request waiting
                for job in jobs:
                    if job.reply is None and job.error is None:
                        job.error = exc
            _deliver(jobs)

    def _take(self) -> list[_Job]:
        jobs = [self._pending.popleft()]
        size = len(jobs[0].body)
        while self._pending and size + len(self._pending[0].body) <= self.max_batch_bytes:
            size += len(self._pending[0].body)
            jobs.append(self._pending.popleft())
        return jobs

    def _serve(self, jobs: list[_Job]) -> None:
        valid = []
        for job in jobs:  # each request on its own: one that fails parsing fails alone
            try:
                job.trips = validate_trips(loads(job.body))
                valid.append(job)
            except InputError as exc:
                job.reply = Reply(exc.status, dumps(exc.as_dict()))
            except Exception as exc:  # answered 500 by the app's handler
                job.error = exc
        if not valid:
            return
        loaded = self.holder.get()
        if loaded is None:
            for job in valid:
                job.reply = Reply(503, dumps(InputError(NO_MODEL, status=503).as_dict()))
            return
        model = {"name": loaded.metadata.get("name"), "version": loaded.metadata.get("version")}
        try:
            answered = list(zip(valid, self.runner.predict(loaded, [job.trips for job in valid]), strict=True))
        except Exception:
            if len(valid) == 1:
                raise
            answered = self._predict_one_by_one(loaded, valid)  # so that only the request at fault fails
        for job, minutes in answered:
            job.reply = Reply(200, prediction_body(minutes, model))
        self.metrics.predictions.inc(sum(len(job.trips) for job, _ in answered))

    def _predict_one_by_one(self, loaded: Loaded, jobs: list[_Job]) -> list[tuple[_Job, np.ndarray]]:
        answered = []
        for job in jobs:
            try:
                answered.append((job, self.runner.predict(loaded, [job.trips])[0]))
            except Exception as exc:
                job.error = exc
        return answered


def _deliver(jobs: list[_Job]) -> None:
    """Resolve each job's future on its own event loop (one wake-up per loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        by_loop.setdefault(job.loop, []).append(job)
    for loop, some in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, some)


def _resolve(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the client went away and the request was cancelled
            continue
        if job.reply is not None:
            job.future.set_result(job.reply)
        else:
            job.future.set_exception(job.error or RuntimeError("the request was not answered"))
