"""Model search and final training: one task per candidate, a selection, and the refitted final models."""

from __future__ import annotations

import datetime as dt
from typing import Any

import luigi

from tasks.base import PipelineTask
from tasks.data import ModelInputTable
from tasks.params import CandidateParameter, ColorParameter, MonthListParameter, MonthParameter
from tasks.settings import ModelSearchConfig, TrainingConfig
from tasks.targets import Output, dump, load
from tripduration.data.months import check_split
from tripduration.training.candidates import BASELINE, fit_cost, get_candidate
from tripduration.training.steps import final_model, score_candidate_on_months, select_best


class TrainingWindow(PipelineTask):
    """Parameters shared by the training stages: which months train and which one validates."""

    color = ColorParameter()
    train_months = MonthListParameter(
        default=(dt.date(2021, 1, 1),), description="training months, e.g. 2021-01,2021-02"
    )
    val_month = MonthParameter(default=dt.date(2021, 2, 1), description="validation month")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_split(self.train_months, self.val_month, getattr(self, "test_month", None))

    def train_tables(self) -> list[ModelInputTable]:
        return [ModelInputTable(color=self.color, month=m) for m in self.train_months]

    def validation_table(self) -> ModelInputTable:
        return ModelInputTable(color=self.color, month=self.val_month)


class CandidateScore(TrainingWindow):
    """Trains one candidate on the training months and scores it on the validation month.

    Reads the months' modelling tables; writes ``score.json`` (validation RMSE/MAE/R2, fit time, params).
    Each candidate is its own task, so ``--workers N`` trains candidates in parallel and a rerun after one
    failed candidate retrains only that one.
    """

    fingerprint_configs = (TrainingConfig,)
    candidate = CandidateParameter(description="candidate name from tripduration.training.candidates.CANDIDATES")

    @property
    def priority(self) -> float:  # type: ignore[override]
        # with several workers the longest fits start first, so they do not end up last and alone
        return fit_cost(get_candidate(self.candidate))

    def requires(self) -> dict[str, Any]:
        return {"train": self.train_tables(), "validation": self.validation_table()}

    def output(self) -> Output:
        return self.target("score.json")

    def run(self) -> None:
        tables = load(self.input())
        spec, max_rows = get_candidate(self.candidate), TrainingConfig().max_rows
        progress = self.progress_with(f"{self.position()}: {self.candidate}")
        dump(self.output(), score_candidate_on_months(spec, tables["train"], tables["validation"], max_rows, progress))

    def position(self) -> str:
        """``candidate 2 of 6`` among ``[model_search] candidates`` (empty for a candidate run on its own)."""
        names = list(ModelSearchConfig().candidates)
        return f"candidate {names.index(self.candidate) + 1} of {len(names)}" if self.candidate in names else ""


class ModelSelection(TrainingWindow):
    """Reads every candidate's score; writes ``selection.json`` with the ranking and the best candidate."""

    fingerprint_configs = (ModelSearchConfig,)

    def requires(self) -> list[CandidateScore]:
        return [self.clone(CandidateScore, candidate=name) for name in ModelSearchConfig().candidates]

    def output(self) -> Output:
        return self.target("selection.json")

    def run(self) -> None:
        selection = select_best(load(self.input()))
        dump(self.output(), selection)
        rmse = selection["best_validation"]["rmse"]
        self.progress(f"best of {len(selection['ranking'])}: {selection['best']} (validation RMSE {rmse:.3f})", 100)


class FinalModel(TrainingWindow):
    """Refits a configuration on the training + validation months.

    ``role=best`` refits the candidate chosen by :class:`ModelSelection`; ``role=baseline`` refits the
    course baseline the same way, so every report shows the gain over it. Writes ``model.joblib`` (one
    scikit-learn Pipeline from canonical trip columns to minutes) and ``fit.json``. Does not depend on the
    test month: changing only the test month reuses these models.
    """

    fingerprint_configs = (TrainingConfig,)
    role = luigi.ChoiceParameter(choices=["best", "baseline"], default="best", var_type=str)

    @property
    def all_cores(self) -> bool:  # type: ignore[override]
        """The best model's refit is on the critical path and scales with cores; the baseline (a linear model,
        a fraction of a second) holds one core, so with --workers 2 it runs beside the candidates."""
        return self.role == "best"

    def requires(self) -> dict[str, Any]:
        deps: dict[str, Any] = {"tables": [*self.train_tables(), self.validation_table()]}
        if self.role == "best":
            deps["selection"] = self.clone(ModelSelection)
        return deps

    def output(self) -> dict[str, Output]:
        return {"model": self.target("model.joblib"), "fit": self.target("fit.json")}

    def run(self) -> None:
        inputs = load(self.input())
        name = inputs["selection"]["best"] if self.role == "best" else BASELINE
        progress = self.progress_with(f"{self.role}: {name}")
        dump(self.output(), final_model(get_candidate(name), inputs["tables"], TrainingConfig().max_rows, progress))
