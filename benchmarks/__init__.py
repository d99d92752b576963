"""Benchmarks of the pipeline (issue 6): orchestration overhead against a plain script, rerun, resume,
scale runs on generated months, and batch-prediction throughput.

Run ``python benchmarks/run.py`` (or ``make bench``); see ``docs/benchmarks.md`` for the latest results.
Nothing here is collected by pytest; ``tests/test_benchmark_smoke.py`` runs ``run.py --quick`` on tiny sizes.
"""
