"""Data stages: the raw month file, its validated split, and the modelling table."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import luigi
from luigi.util import inherits, requires

from tasks.base import PipelineTask, SourceFile
from tasks.params import ColorParameter, MonthParameter
from tasks.settings import DownloadConfig, PathsConfig, ValidationConfig
from tasks.targets import Output, dump, load, raw_storage, zone_lookup_file
from tripduration.data.fetch import SlowSourceError, TransferLimits, download_progress
from tripduration.data.fetch import download as fetch_url
from tripduration.data.months import format_month
from tripduration.data.rules import Rules
from tripduration.data.validation import validated_month
from tripduration.errors import DownloadError
from tripduration.training.features import MODEL_TABLE_SOURCE_COLUMNS
from tripduration.training.steps import modelling_table


class TripData(SourceFile, PipelineTask):
    """The raw TLC file of one (colour, month).

    Reads nothing if ``<raw_dir>/<color>_tripdata_<YYYY-MM>.parquet`` exists (that file is the output).
    Otherwise downloads it from ``[download] url_template`` into the work directory: streamed to a temporary
    file, checked to be readable parquet, then moved into place. A transfer that broke is retried with backoff;
    a month that is not there (404, DNS failure, refused) fails at once, and ``[download] offline`` never downloads.
    ``[download] deadline_seconds`` bounds the whole download and ``min_bytes_per_second`` its rate: a slow
    source fails the task (naming the URL, nothing kept) instead of holding the run and its lock for hours.
    """

    color = ColorParameter()
    month = MonthParameter(description="month of trips, YYYY-MM")
    #: no scheduler retries: a transfer that broke is retried inside the task with backoff ([download]
    #: retries); anything else (404, DNS failure, refused) would fail the same way again, so one attempt
    retry_count = 1

    def file_name(self) -> str:
        return f"{self.color}_tripdata_{format_month(self.month)}.parquet"

    def output(self) -> Output:
        embedded = Output(raw_storage(), self.file_name())
        if embedded.exists():
            return embedded
        return self.target(self.file_name())

    def run(self) -> None:
        cfg, url = DownloadConfig(), self.url()
        if cfg.offline:
            raise DownloadError(
                f"{self.file_name()} is not in {PathsConfig().raw_dir} and [download] offline = true: "
                f"not fetching {url}",
                transient=False,
            )
        limits = TransferLimits(cfg.deadline_seconds, cfg.min_bytes_per_second, cfg.min_rate_window_seconds)
        try:
            with self.output().writing() as tmp:
                fetch_url(
                    url,
                    tmp,
                    timeout=cfg.timeout_seconds,
                    retries=cfg.retries,
                    backoff=cfg.backoff_seconds,
                    progress=download_progress(url, self.progress),
                    limits=limits,
                )
        except SlowSourceError as exc:  # name the settings that decided it
            raise SlowSourceError(
                f"{exc} ([download] deadline_seconds = {cfg.deadline_seconds:g}, min_bytes_per_second = "
                f"{cfg.min_bytes_per_second:g}, min_rate_window_seconds = {cfg.min_rate_window_seconds:g})"
            ) from exc

    def url(self) -> str:
        return DownloadConfig().url_template.format(color=self.color, month=format_month(self.month))


class ZoneLookup(SourceFile, luigi.ExternalTask):
    """The TLC taxi zone lookup CSV (tracked in ``data/``); its content is part of its consumers' fingerprints."""

    def output(self) -> Output:
        return Output(*zone_lookup_file())


@inherits(TripData)
class ValidatedTrips(PipelineTask):
    """Reads the raw month file; writes ``kept.parquet`` (canonical schema), ``rejected.parquet`` (with a
    ``reason`` column) and ``summary.json`` (rows in/kept/rejected and counts per reason)."""

    if TYPE_CHECKING:  # parameters added by @inherits/@requires, declared for the type checker
        color: str
        month: dt.date

    fingerprint_configs = (ValidationConfig,)

    def requires(self) -> dict[str, luigi.Task]:
        trips, zones = self.sources()
        return {"trips": trips, "zones": zones}

    def sources(self) -> tuple[TripData, ZoneLookup]:
        return self.clone(TripData), ZoneLookup()

    def output(self) -> dict[str, Output]:
        return {name: self.target(name) for name in ("kept.parquet", "rejected.parquet", "summary.json")}

    def run(self) -> None:
        trips, zones = self.sources()
        with trips.pinned_copy() as trips_path, zones.pinned_copy() as zones_path:
            names = (trips.output().path, zones.output().path)
            outputs = validated_month(trips_path, zones_path, self.month, rules(), names, self.progress)
        trips.check_read(outputs["summary.json"]["source"]["sha256"])
        zones.check_read(outputs["summary.json"]["zone_lookup"]["sha256"])
        dump(self.output(), outputs)


def rules() -> Rules:
    """The row rules with ``[validation]``'s thresholds."""
    cfg = ValidationConfig()
    return Rules(cfg.min_duration_min, cfg.max_duration_min, cfg.max_distance_miles)


@requires(ValidatedTrips)
class ModelInputTable(PipelineTask):
    """Reads kept trips; writes ``table.parquet``: dispatch-time model inputs plus ``duration_min``."""

    if TYPE_CHECKING:  # parameters added by @inherits/@requires, declared for the type checker
        color: str
        month: dt.date

    def output(self) -> Output:
        return self.target("table.parquet")

    def run(self) -> None:
        table = modelling_table(load(self.input()["kept.parquet"], columns=list(MODEL_TABLE_SOURCE_COLUMNS)))
        dump(self.output(), table)
        self.progress(f"{len(table)} rows", 100)
