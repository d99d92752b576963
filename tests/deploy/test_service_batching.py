"""The fast path of ``POST /predict`` (issue 22): micro-batching, the compiled tree model, thread counts.

- Requests that wait while the predict thread is busy are answered by one model call, each with its own
  answer; a bad trip fails only its own request.
- Served by a real uvicorn, a tree model of the production kind answers thousands of real trips (singles
  from concurrent clients and 1,000-trip batches) with exactly ``round(model.predict(frame), 3)``.
- A model the compiled path does not cover runs ``model.predict`` with one OpenMP thread for a small batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from threadpoolctl import threadpool_info

from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.registry.store import ModelRegistry
from tripduration.runtime.threads import usable_cpus
from tripduration.service.batching import PredictBatcher
from tripduration.service.holder import Loaded
from tripduration.service.metrics import Metrics
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

from .test_service import MODEL_NAME, Client, serve, trips_of

__all__ = ["serve"]  # the fixture, used by name


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    out = {}
    for month in ("2021-01", "2021-03"):
        kept, _, _ = validate_trip_file(
            DATA / f"green_tripdata_{month}.parquet", dt.date.fromisoformat(f"{month}-01"), Rules()
        )
        out[month] = model_table(kept)
    return out


@pytest.fixture(scope="module")
def tree_model(tables: dict[str, pd.DataFrame]) -> Any:
    X, y = split_xy(tables["2021-01"].sample(n=20_000, random_state=3))
    pipeline = build_pipeline(CANDIDATES["hgb_lr10_l31"])
    pipeline.set_params(model__max_iter=60)  # the production kind of model, fewer trees
    return pipeline.fit(X, y)


class FixedHolder:
    """A holder that always serves one model (the batcher asks it once per batch)."""

    def __init__(self, model: Any) -> None:
        self.loaded = Loaded(model, {"name": MODEL_NAME, "version": "v0001"}, (0, 0, 0))
        self.calls = 0

    def get(self) -> Loaded:
        self.calls += 1
        return self.loaded


def test_requests_waiting_together_are_predicted_in_one_call(tree_model: Any, tables: dict[str, pd.DataFrame]) -> None:
    rows = split_xy(tables["2021-03"].sample(n=10, random_state=4))[0]
    trips = trips_of(rows)
    bad = dict(trips[0], PULocationID=999)
    batcher = PredictBatcher(FixedHolder(tree_model), Metrics())  # type: ignore[arg-type]
    calls: list[list[int]] = []
    release = threading.Event()
    real_predict = batcher.runner.predict

    def held_predict(loaded: Loaded, groups: Any) -> Any:
        calls.append([len(g) for g in groups])
        release.wait(10)  # the first batch holds the predict thread: the others queue meanwhile
        return real_predict(loaded, groups)

    batcher.runner.predict = held_predict  # type: ignore[method-assign]

    async def scenario() -> list[Any]:
        first = asyncio.create_task(batcher.submit(json.dumps(trips[0]).encode()))
        while not calls:
            await asyncio.sleep(0.01)
        bodies = [json.dumps(t).encode() for t in trips[1:]] + [json.dumps(bad).encode(), json.dumps(trips).encode()]
        rest = [asyncio.create_task(batcher.submit(body)) for body in bodies]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(first, *rest)

    try:
        replies = asyncio.run(scenario())
    finally:
        batcher.close()
    assert calls == [[1], [1] * 9 + [10]], calls  # the bad request is not in the model call
    expected = tree_model.predict(rows)
    for i, reply in enumerate(replies[:10]):
        assert reply.status == 200, reply.body
        answer = json.loads(reply.body)
        assert answer["predictions"] == [{"duration_min": round(float(expected[i]), 3)}]
        assert answer["model"] == {"name": MODEL_NAME, "version": "v0001"}
    refused = json.loads(replies[10].body)
    assert replies[10].status == 400 and refused["field"] == "PULocationID" and "999" in refused["error"]
    whole = json.loads(replies[11].body)["predictions"]
    assert [p["duration_min"] for p in whole] == [round(float(m), 3) for m in expected]


@pytest.mark.slow
def test_served_tree_model_answers_real_trips_exactly_as_the_pipeline(
    tree_model: Any, tables: dict[str, pd.DataFrame], serve: Any, tmp_path: Path
) -> None:
    model_file = tmp_path / "tree.joblib"
    joblib.dump(tree_model, model_file)
    registry = ModelRegistry(tmp_path / "models", MODEL_NAME)
    version = registry.register(model_file, {"metrics": {}, "data": [], "algorithm": {"candidate": "hgb_lr10_l31"}})
    with registry.lock():
        registry.set_production(version, "test")
    client: Client = serve(registry)
    assert client.app.state.batcher.runner.prepare(client.app.state.holder.get()) is not None, "compiled"

    rows = split_xy(tables["2021-03"].sample(n=3000, random_state=5))[0]
    expected = [round(float(m), 3) for m in tree_model.predict(rows)]
    trips = trips_of(rows)
    got: list[float] = []
    for start in range(0, len(trips), 1000):  # 1,000-trip batches
        answer = client.predict(trips[start : start + 1000])
        assert answer.status == 200, answer.body
        got += [p["duration_min"] for p in answer.body["predictions"]]
    assert got == expected

    def single(i: int) -> float:  # single trips from 8 concurrent clients: batched together by the service
        answer = client.predict(trips[i])
        assert answer.status == 200, answer.body
        return float(answer.body["predictions"][0]["duration_min"])

    with ThreadPoolExecutor(8) as pool:
        singles = list(pool.map(single, range(400)))
    assert singles == expected[:400]


class OpenMPRecorder:
    """Stands for a model the compiled path does not cover: records the OpenMP threads its predict may use."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.threads += [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
        return np.zeros(len(frame))


@pytest.mark.skipif(usable_cpus() < 2, reason="one CPU: one thread is the default anyway")
def test_small_batches_of_an_uncompiled_model_use_one_openmp_thread(tables: dict[str, pd.DataFrame]) -> None:
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime, as a real model would

    recorder = OpenMPRecorder()
    batcher = PredictBatcher(FixedHolder(recorder), Metrics())  # type: ignore[arg-type]
    trips = trips_of(split_xy(tables["2021-03"].head(600))[0])

    async def ask(payload: Any) -> int:
        return (await batcher.submit(json.dumps(payload).encode())).status

    try:
        assert asyncio.run(ask(trips[0])) == 200
        small = list(recorder.threads)
        assert asyncio.run(ask(trips)) == 200
        large = recorder.threads[len(small) :]
    finally:
        batcher.close()
    assert small and set(small) == {1}, small
    assert large and set(large) == {usable_cpus()}, large


def test_the_batcher_stops_its_thread_on_close(tree_model: Any) -> None:
    """close() returns once the predict thread has stopped, with or without a request ever served."""
    idle = PredictBatcher(FixedHolder(tree_model), Metrics())  # type: ignore[arg-type]
    idle.close()
    used = PredictBatcher(FixedHolder(tree_model), Metrics())  # type: ignore[arg-type]
    trip = {"pickup_datetime": "2021-03-15T08:30:00", "PULocationID": 74, "DOLocationID": 236, "trip_distance": 2.1}
    assert asyncio.run(used.submit(json.dumps(trip).encode())).status == 200
    thread = used._thread
    used.close()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(used.submit(json.dumps(trip).encode()))


class FailsOnZone13:
    """A model whose predict raises when any trip starts in zone 13 (a model call a batch-mate can break)."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["PULocationID"] == 13).any():
            raise ValueError("zone 13 breaks this model")
        return np.full(len(frame), 7.0)


def test_a_request_that_breaks_the_model_fails_alone_not_its_batch() -> None:
    batcher = PredictBatcher(FixedHolder(FailsOnZone13()), Metrics())  # type: ignore[arg-type]
    release = threading.Event()
    real_predict = batcher.runner.predict
    calls: list[int] = []

    def held_predict(loaded: Loaded, groups: Any) -> Any:
        calls.append(len(groups))
        if len(calls) == 1:
            release.wait(10)
        return real_predict(loaded, groups)

    batcher.runner.predict = held_predict  # type: ignore[method-assign]
    trip = {"pickup_datetime": "2021-03-15T08:30:00", "PULocationID": 74, "DOLocationID": 236, "trip_distance": 2.1}
    bodies = [json.dumps(dict(trip, PULocationID=zone)).encode() for zone in (74, 13, 75)]

    async def scenario() -> list[Any]:
        first = asyncio.create_task(batcher.submit(json.dumps(trip).encode()))
        while not calls:
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.submit(body)) for body in bodies]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        first, ok_before, broken, ok_after = asyncio.run(scenario())
    finally:
        batcher.close()
    assert calls[:2] == [1, 3], calls  # the three were batched; the batch failed; then one by one
    for reply in (first, ok_before, ok_after):
        assert reply.status == 200 and json.loads(reply.body)["predictions"] == [{"duration_min": 7.0}]
    assert isinstance(broken, ValueError) and "zone 13" in str(broken)


class BreaksTheCompiler:
    """A model whose structure makes compiling fail with an unexpected error, while its predict works."""

    @property
    def steps(self) -> Any:
        raise RuntimeError("odd structure")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), 5.0)


def test_a_model_that_fails_to_compile_is_served_by_its_own_predict() -> None:
    batcher = PredictBatcher(FixedHolder(BreaksTheCompiler()), Metrics())  # type: ignore[arg-type]
    batcher.warm()
    trip = {"pickup_datetime": "2021-03-15T08:30:00", "PULocationID": 74, "DOLocationID": 236, "trip_distance": 2.1}
    try:
        reply = asyncio.run(batcher.submit(json.dumps(trip).encode()))
    finally:
        batcher.close()
    assert reply.status == 200 and json.loads(reply.body)["predictions"] == [{"duration_min": 5.0}]
