"""Data stages: the raw month file, its validated split, and the modelling table."""

from __future__ import annotations

import luigi
import pandas as pd
from luigi.util import inherits, requires

from tasks.base import PipelineTask, SourceFile
from tasks.params import ColorParameter, MonthParameter
from tasks.settings import DownloadConfig, PathsConfig, ValidationConfig
from tasks.targets import atomic_path, file_target, is_remote, local_copy, location, write_json
from tripduration.errors import DownloadError
from tripduration.features import MODEL_TABLE_SOURCE_COLUMNS
from tripduration.fetch import download as fetch_url
from tripduration.months import format_month
from tripduration.nodes import modelling_table, read_zone_ids, validate_trip_file
from tripduration.parquet import read_parquet, write_parquet
from tripduration.rules import Rules


class TripData(SourceFile, PipelineTask):
    """The raw TLC file of one (colour, month).

    Reads nothing if ``<raw_dir>/<color>_tripdata_<YYYY-MM>.parquet`` exists (that file is the output).
    Otherwise downloads it from ``[download] url_template`` into the work directory: streamed to a temporary
    file, checked to be readable parquet, then moved into place. A transfer that broke is retried with backoff;
    a month that is not there (404, DNS failure, refused) fails at once, and ``[download] offline`` never downloads.
    """

    color = ColorParameter()
    month = MonthParameter(description="month of trips, YYYY-MM")
    #: no scheduler retries: a transfer that broke is retried inside the task with backoff ([download]
    #: retries); anything else (404, DNS failure, refused) would fail the same way again, so one attempt
    retry_count = 1

    def file_name(self) -> str:
        return f"{self.color}_tripdata_{format_month(self.month)}.parquet"

    def output(self) -> luigi.target.FileSystemTarget:
        embedded = file_target(location(PathsConfig().raw_dir) / self.file_name())
        if embedded.exists():
            return embedded
        return self.target(self.file_name())

    def run(self) -> None:
        cfg = DownloadConfig()
        url = cfg.url_template.format(color=self.color, month=format_month(self.month))
        if cfg.offline:
            raise DownloadError(
                f"{self.file_name()} is not in {PathsConfig().raw_dir} and [download] offline = true: "
                f"not fetching {url}",
                transient=False,
            )

        def report(done: int, total: int | None) -> None:
            pct = int(100 * done / total) if total else None
            self.progress(f"downloading {url}: {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f}" if total else ""), pct)

        with atomic_path(self.output()) as tmp:
            fetch_url(
                url, tmp, timeout=cfg.timeout_seconds, retries=cfg.retries, backoff=cfg.backoff_seconds, progress=report
            )


class ZoneLookup(SourceFile, luigi.ExternalTask):
    """The TLC taxi zone lookup CSV (tracked in ``data/``); its content is part of its consumers' fingerprints."""

    def output(self) -> luigi.target.FileSystemTarget:
        return file_target(location(PathsConfig().zone_lookup))


@inherits(TripData)
class ValidatedTrips(PipelineTask):
    """Reads the raw month file; writes ``kept.parquet`` (canonical schema), ``rejected.parquet`` (with a
    ``reason`` column) and ``summary.json`` (rows in/kept/rejected and counts per reason)."""

    code_version = 3  # 2: unreadable values rejected; 3: source sha256 in summary, dispatch rules first
    fingerprint_configs = (ValidationConfig,)

    def requires(self) -> dict[str, luigi.Task]:
        return {"trips": self.clone(TripData), "zones": ZoneLookup()}

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {name: self.target(name) for name in ("kept.parquet", "rejected.parquet", "summary.json")}

    def run(self) -> None:
        cfg = ValidationConfig()
        rules = Rules(cfg.min_duration_min, cfg.max_duration_min, cfg.max_distance_miles)
        sources = self.requires()
        inputs = self.input()
        # S3 inputs: downloaded once to local scratch, only if still the bytes the graph was built on
        # (If-Match); then hashed and read from the same copy (read_unchanged), as a local file
        with local_copy(inputs["zones"], remote_identity(sources["zones"])) as zones_path:
            zones, zones_sha256 = read_zone_ids(zones_path)
        check_content(sources["zones"], zones_sha256)
        self.progress(f"validating {inputs['trips'].path}", 10)
        with local_copy(inputs["trips"], remote_identity(sources["trips"])) as trips_path:
            kept, rejected, summary = validate_trip_file(trips_path, self.month, rules, zones)
        check_content(sources["trips"], summary["source"]["sha256"])
        summary["source"]["path"] = inputs["trips"].path
        summary["zone_lookup"] = {"path": inputs["zones"].path, "sha256": zones_sha256}
        self.progress(
            f"{summary['rows_in']} rows: {summary['rows_kept']} kept, {summary['rows_rejected']} rejected", 70
        )
        out = self.output()
        for name, frame in (("kept.parquet", kept), ("rejected.parquet", rejected)):
            with atomic_path(out[name]) as tmp:
                write_parquet(frame, tmp)
        write_json(out["summary.json"], summary)
        self.progress(
            f"{summary['rows_in']} rows: {summary['rows_kept']} kept, {summary['rows_rejected']} rejected", 100
        )


@requires(ValidatedTrips)
class ModelInputTable(PipelineTask):
    """Reads kept trips; writes ``table.parquet``: dispatch-time model inputs plus ``duration_min``."""

    code_version = 1

    def output(self) -> luigi.LocalTarget:
        return self.target("table.parquet")

    def run(self) -> None:
        self.progress("reading kept trips", 10)
        kept = read_table(self.input()["kept.parquet"], columns=list(MODEL_TABLE_SOURCE_COLUMNS))
        table = modelling_table(kept)
        self.progress(f"writing {len(table)} rows of model inputs and target", 60)
        with atomic_path(self.output()) as tmp:
            write_parquet(table, tmp)
        self.progress(f"{len(table)} rows", 100)


def check_content(source: SourceFile, actual_sha256: str) -> None:
    """Refuse to record results of a file that changed after the graph was built (its digest is in the
    fingerprint of this task's output path): the outputs would describe other bytes than their path says."""
    expected = source.content_sha256()
    if is_remote(source.output()):  # identity is the ETag, checked by the download itself (If-Match)
        return
    if expected is not None and expected != actual_sha256:
        raise RuntimeError(
            f"{source.output().path} changed while the pipeline was running (sha256 {expected[:12]}... when the "
            f"run started, {actual_sha256[:12]}... when read); nothing was written. Run the same command again: "
            "it will process the new content."
        )


def remote_identity(source: SourceFile) -> str | None:
    """The ETag identity the graph was built on, for an S3 input (None for a local file)."""
    return source.content_sha256() if is_remote(source.output()) else None


def read_table(target: luigi.target.FileSystemTarget, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet output, local or S3 (column-wise ranged reads with pyarrow's S3 filesystem)."""
    if is_remote(target):
        from tasks.s3_targets import read_parquet_target

        return read_parquet_target(target, columns)
    return read_parquet(target.path, columns=columns)
