"""Model search and final training: one task per candidate, a selection, and the refitted final models."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import joblib
import luigi

from tasks.base import PipelineTask
from tasks.data import ModelInputTable, read_table
from tasks.params import ColorParameter, MonthListParameter, MonthParameter
from tasks.settings import ModelSearchConfig, TrainingConfig
from tasks.targets import atomic_path, is_remote, read_bytes, read_json, write_json
from tripduration.candidates import BASELINE, fit_cost, get_candidate
from tripduration.months import check_split
from tripduration.nodes import concat_tables, fit_candidate, fit_row_count, score_candidate, select_best


class TrainingWindow(PipelineTask):
    """Parameters shared by the training stages: which months train and which one validates."""

    color = ColorParameter()
    train_months = MonthListParameter(default="2021-01", description="training months, e.g. 2021-01,2021-02")
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

    code_version = 1
    fingerprint_configs = (TrainingConfig,)
    candidate = luigi.Parameter(description="candidate name from tripduration.candidates.CANDIDATES")

    @property
    def priority(self) -> float:  # type: ignore[override]
        # with several workers the longest fits start first, so they do not end up last and alone
        return fit_cost(get_candidate(self.candidate))

    def requires(self) -> dict[str, Any]:
        return {"train": self.train_tables(), "validation": self.validation_table()}

    def output(self) -> luigi.LocalTarget:
        return self.target("score.json")

    def run(self) -> None:
        spec = get_candidate(self.candidate)
        names = list(ModelSearchConfig().candidates)
        position = f"candidate {names.index(self.candidate) + 1} of {len(names)}" if self.candidate in names else ""
        self.progress(f"{position}: {self.candidate}: reading months", 5)
        train = concat_tables([read_table(t) for t in self.input()["train"]], "training")
        validation = read_table(self.input()["validation"])
        self.progress(f"{position}: {self.candidate}: fitting on {len(train)} trips", 20)
        score = score_candidate(spec, train, validation, TrainingConfig().max_rows)
        write_json(self.output(), score)
        self.progress(f"{position}: {self.candidate}: validation RMSE {score['validation']['rmse']:.3f}", 100)


class ModelSelection(TrainingWindow):
    """Reads every candidate's score; writes ``selection.json`` with the ranking and the best candidate."""

    code_version = 1
    fingerprint_configs = (ModelSearchConfig,)

    def requires(self) -> list[CandidateScore]:
        return [self.clone(CandidateScore, candidate=name) for name in ModelSearchConfig().candidates]

    def output(self) -> luigi.LocalTarget:
        return self.target("selection.json")

    def run(self) -> None:
        selection = select_best([read_json(t) for t in self.input()])
        write_json(self.output(), selection)
        rmse = selection["best_validation"]["rmse"]
        self.progress(f"best of {len(selection['ranking'])}: {selection['best']} (validation RMSE {rmse:.3f})", 100)


class FinalModel(TrainingWindow):
    """Refits a configuration on the training + validation months.

    ``role=best`` refits the candidate chosen by :class:`ModelSelection`; ``role=baseline`` refits the
    course baseline the same way, so every report shows the gain over it. Writes ``model.joblib`` (one
    scikit-learn Pipeline from canonical trip columns to minutes) and ``fit.json``. Does not depend on the
    test month: changing only the test month reuses these models.
    """

    code_version = 1
    fingerprint_configs = (TrainingConfig,)
    all_cores = True
    role = luigi.ChoiceParameter(choices=["best", "baseline"], default="best", var_type=str)

    def requires(self) -> dict[str, Any]:
        deps: dict[str, Any] = {"tables": [*self.train_tables(), self.validation_table()]}
        if self.role == "best":
            deps["selection"] = self.clone(ModelSelection)
        return deps

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"model": self.target("model.joblib"), "fit": self.target("fit.json")}

    def run(self) -> None:
        name = read_json(self.input()["selection"])["best"] if self.role == "best" else BASELINE
        self.progress(f"{self.role}: {name}: reading months", 5)
        data = concat_tables([read_table(t) for t in self.input()["tables"]], "training + validation")
        self.progress(f"{self.role}: {name}: fitting on {len(data)} trips", 20)
        model, seconds = fit_candidate(get_candidate(name), data, TrainingConfig().max_rows)
        out = self.output()
        with atomic_path(out["model"]) as tmp:
            joblib.dump(model, tmp, compress=3)
        spec = get_candidate(name)
        write_json(
            out["fit"],
            {
                "candidate": name,
                "family": spec.family,
                "params": spec.params,
                "description": spec.description,
                "rows": len(data),
                "fit_rows": fit_row_count(len(data), TrainingConfig().max_rows),
                "fit_seconds": round(seconds, 3),
            },
        )
        self.progress(f"{self.role}: {name}: fitted in {seconds:.1f}s", 100)


def load_model(target: luigi.target.FileSystemTarget) -> Any:
    """A fitted model output, local or S3 (read as bytes: joblib loads from a file object)."""
    if not is_remote(target):
        return joblib.load(target.path)
    return joblib.load(io.BytesIO(read_bytes(target)))
