"""The file registry in MLflow: training runs tracked as they go, and the export that backfills a registry.

The file registry (:mod:`tripduration.registry.store`) stays the source of truth; MLflow mirrors it, one way.

- :mod:`.mapping` (no mlflow): what registry metadata, candidate scores and evaluation reports become in MLflow
  (params, metrics, tags, run names, the alias targets): the one place both paths below use;
- :mod:`.client`: MLflow itself (imported on first use), the experiment and registered model, a version's run,
  model and model version (:func:`~.client.mirror_version`) and the aliases;
- :mod:`.model`: the logged model: the registry's pipeline behind the HTTP API's fields, its signature and
  input example;
- :mod:`.export`: ``tripduration export-mlflow``: every version of a registry, for backfilling;
- :mod:`.tracking`: a training job as it runs: a parent run, a nested run per candidate, the evaluation and the
  registration.

Nothing here imports mlflow at module level: the pipeline's commands never pay for it unless MLflow is used.
"""
