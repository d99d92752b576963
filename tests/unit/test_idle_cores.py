"""A task that holds one core takes up a core left idle between two of its phases (issue 22: the critical path)."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from tasks.ops import process


class Task:
    """What use_idle_cores reads of a task: the OpenMP threads it started with."""

    def __init__(self, threads: int) -> None:
        self.__dict__["_openmp_threads"] = self.__dict__["_openmp_threads_at_start"] = threads


def openmp_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}


@pytest.fixture
def two_cpus(monkeypatch, config):
    import sklearn.ensemble  # noqa: F401 - the OpenMP runtime a task process has loaded

    config.set("parallelism", "threads_per_task", "0")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(process, "usable_cpus", lambda: 2)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")  # what a one-core task process starts with


@pytest.mark.parametrize(("free", "expected"), [(2, 2), (1, 1)])
def test_a_one_core_task_uses_an_idle_core_for_its_next_phase(two_cpus, monkeypatch, free, expected):
    task = Task(1)
    monkeypatch.setattr(process.native_threads, "free_cpus", lambda: free)
    process.use_idle_cores(task)
    assert task.__dict__["_openmp_threads"] == expected
    assert openmp_threads() == {expected}


def test_it_gives_the_core_back_when_the_machine_got_busy(two_cpus, monkeypatch):
    task = Task(1)
    monkeypatch.setattr(process.native_threads, "free_cpus", lambda: 2)
    process.use_idle_cores(task)
    assert openmp_threads() == {2}
    monkeypatch.setattr(process.native_threads, "free_cpus", lambda: 1)
    process.use_idle_cores(task)
    assert task.__dict__["_openmp_threads"] == 1 and openmp_threads() == {1}


def test_a_task_that_holds_every_core_is_left_alone(two_cpus, monkeypatch):
    task = Task(2)
    monkeypatch.setattr(process.native_threads, "free_cpus", lambda: 1)
    process.use_idle_cores(task)
    assert task.__dict__["_openmp_threads"] == 2


def test_a_fixed_thread_count_or_an_operators_cap_wins(two_cpus, monkeypatch, config):
    monkeypatch.setattr(process.native_threads, "free_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    task = Task(1)
    process.use_idle_cores(task)
    assert task.__dict__["_openmp_threads"] == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    config.set("parallelism", "threads_per_task", "1")
    process.use_idle_cores(task)
    assert task.__dict__["_openmp_threads"] == 1
