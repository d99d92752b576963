"""Entry-point tasks (WrapperTasks) that name a whole job."""

from __future__ import annotations

import luigi
from luigi.util import requires

from tasks.registration import RegisteredModel


@requires(RegisteredModel)
class TrainingPipeline(luigi.WrapperTask):
    """Train, select, evaluate and register a trip-duration model.

    Parameters: ``--color``, ``--train-months`` (one or more), ``--val-month``, ``--test-month``.
    Defaults: green, train 2021-01, validate 2021-02, test 2021-03.
    """
