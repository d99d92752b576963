"""Cores with ``--workers`` > 1: light tasks one thread each side by side, all-cores tasks alone with every core.

The tasks here record the OpenMP thread limit their process runs with and when they ran; the scheduler's
``cores`` resource must keep an all-cores task from overlapping any other task (no oversubscription) while
light tasks still run in parallel.
"""

from __future__ import annotations

import itertools
import json
import time

import luigi
import pytest

from tasks.base import PipelineTask
from tasks.ops import runner
from tasks.ops.process import scheduler_cores


class CoreProbe(PipelineTask):
    name = luigi.Parameter()
    heavy = luigi.BoolParameter(default=False)

    @property
    def all_cores(self) -> bool:  # type: ignore[override]
        return bool(self.heavy)

    def output(self) -> luigi.LocalTarget:
        return self.target("probe.json")

    def run(self) -> None:
        import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime, as every real task process has it
        from threadpoolctl import threadpool_info

        start = time.time()
        time.sleep(0.6)
        threads = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"})
        with self.output().open("w") as fh:
            json.dump({"name": self.name, "start": start, "end": time.time(), "threads": threads}, fh)


class Probes(luigi.WrapperTask):
    def requires(self) -> list[CoreProbe]:
        return [CoreProbe(name=f"light{i}") for i in range(4)] + [CoreProbe(name="heavy", heavy=True)]


@pytest.fixture
def probe_config(tmp_path, config):
    config.set("paths", "work_dir", str(tmp_path / "work"))
    config.set("paths", "registry_dir", str(tmp_path / "models"))
    config.set("parallelism", "threads_per_task", "0")
    config.set("resources", "cores", "2")
    config.set("worker", "wait_interval", "0.1")
    return tmp_path


def test_resources_follow_the_cores_setting(probe_config, config):
    light, heavy = CoreProbe(name="a"), CoreProbe(name="b", heavy=True)
    assert scheduler_cores() == 2
    assert (light.resources, heavy.resources) == ({"cores": 1}, {"cores": 2})
    config.set("parallelism", "threads_per_task", "1")  # an explicit setting wins
    assert (CoreProbe(name="c").resources, CoreProbe(name="d", heavy=True).resources) == ({"cores": 1}, {"cores": 1})
    config.config.remove_option("resources", "cores")  # no such resource: ask for none, one thread when forked
    assert scheduler_cores() == 0
    assert CoreProbe(name="e", heavy=True).resources == {}
    assert CoreProbe(name="e", heavy=True).task_cores() == 1


def test_two_workers_run_light_tasks_side_by_side_and_the_heavy_one_alone(probe_config, monkeypatch):
    # an idle machine (forked task processes inherit the patch): this test is about the cores resource
    monkeypatch.setattr("tripduration.runtime.threads.other_runnable", lambda: 0)
    assert runner.run([Probes()], workers=2) == 0
    files = probe_config.glob("work/CoreProbe/*/probe.json")
    probes = {p["name"]: p for p in (json.loads(f.read_text()) for f in files)}
    assert sorted(probes) == ["heavy", "light0", "light1", "light2", "light3"]
    heavy = probes.pop("heavy")
    assert heavy["threads"] == [2], heavy
    assert all(p["threads"] == [1] for p in probes.values()), probes
    for p in probes.values():  # nothing ran while the all-cores task did
        assert p["end"] <= heavy["start"] or p["start"] >= heavy["end"], (p, heavy)
    light = sorted(probes.values(), key=lambda p: p["start"])
    overlaps = sum(a["end"] > b["start"] for a, b in itertools.pairwise(light))
    assert overlaps >= 1, light  # two workers did run light tasks at the same time


def test_offer_cores_asks_luigid_and_asks_for_nothing_it_lacks(monkeypatch, config):
    from luigi.rpc import RemoteScheduler

    config.set("resources", "cores", "7")
    monkeypatch.setattr(RemoteScheduler, "resource_list", lambda self: [{"name": "cores", "num_total": 3}])
    assert runner.offer_cores("http://127.0.0.1:1") == 3 and scheduler_cores() == 3
    monkeypatch.setattr(RemoteScheduler, "resource_list", lambda self: [])
    assert runner.offer_cores("http://127.0.0.1:1") == 0 and scheduler_cores() == 0


def test_on_a_busy_machine_a_task_starts_only_the_threads_free_cpus_allow(probe_config, monkeypatch):
    """One other runnable process on 2 CPUs: even the all-cores task uses one OpenMP thread (CPU contention
    then slows it in proportion instead of making its threads wait for each other at every barrier)."""
    monkeypatch.setattr("tripduration.runtime.threads.other_runnable", lambda: 1)
    assert runner.run([CoreProbe(name="busy", heavy=True)], workers=2) == 0
    (probe,) = [json.loads(f.read_text()) for f in probe_config.glob("work/CoreProbe/*/probe.json")]
    assert probe["threads"] == [1], probe
