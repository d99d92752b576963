"""Entry-point tasks (WrapperTasks) that name a whole job."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import luigi
from luigi.util import requires

from tasks.data import TripData
from tasks.params import ColorParameter, MonthParameter
from tasks.registration import RegisteredModel
from tasks.settings import MonthlyConfig
from tripduration.data.months import add_months, check_split, format_month


@requires(RegisteredModel)
class TrainingPipeline(luigi.WrapperTask):
    """Train, select, evaluate and register a trip-duration model.

    Parameters: ``--color``, ``--train-months`` (one or more), ``--val-month``, ``--test-month``.
    Defaults: green, train 2021-01, validate 2021-02, test 2021-03.
    """

    if TYPE_CHECKING:  # parameters added by @requires, declared for the type checker
        color: str
        train_months: tuple[dt.date, ...]
        val_month: dt.date
        test_month: dt.date

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_split(self.train_months, self.val_month, self.test_month)  # refuse overlaps before any file


class MonthlyTraining(luigi.WrapperTask):
    """The monthly job for ``month`` M (the latest month with trips, usually the one that just ended).

    Tests on M, validates on M-1 and trains on the ``[monthly] train_window`` months before that. It has one
    month parameter, so ``luigi.tools.range.RangeMonthly(of=MonthlyTraining)`` backfills a span of months.
    """

    month = MonthParameter(description="test month M; validation is M-1, training the months before")
    color = ColorParameter()

    def window(self) -> dict[str, Any]:
        """The split of this month's job: ``train_months`` (tuple), ``val_month`` and ``test_month`` (M)."""
        window = MonthlyConfig().train_window
        if window < 1:
            raise ValueError(f"[monthly] train_window is {window}; it must be at least 1")
        val = add_months(self.month, -1)
        train = tuple(add_months(val, -k) for k in range(window, 0, -1))
        return {"train_months": train, "val_month": val, "test_month": self.month}

    def requires(self) -> TrainingPipeline:
        return TrainingPipeline(color=self.color, **self.window())

    def registration(self) -> RegisteredModel:
        """The task that registers this month's model: its ``registration.json`` names the version and the
        gate's decision (what MonthlyRun records after training a challenger)."""
        return RegisteredModel(color=self.color, **self.window())

    def months_not_local(self) -> list[str]:
        """Months of the window whose raw file is neither in ``[paths] raw_dir`` nor downloaded into the work
        directory (so training would have to download them first); YYYY-MM, oldest first."""
        window = self.window()
        months = sorted({*window["train_months"], window["val_month"], window["test_month"]})
        return [format_month(m) for m in months if not TripData(color=self.color, month=m).complete()]
