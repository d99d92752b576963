"""The commands that work on the model registry directly, without a luigi run: serve, models, rollback,
export-mlflow."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from tasks.cli.errors import BAD_ARGUMENTS, UsageError
from tasks.predictions import model_registry
from tasks.tracking import follow_registry, tracking_uri
from tripduration.registry.names import GateRejectedError
from tripduration.registry.store import ModelRegistry
from tripduration.runtime.extras import require_extra


def mlflow_tracking_uri(given: str | None) -> str | None:
    """--tracking-uri, else ``[mlflow] tracking_uri`` (a relative sqlite path is relative to this project's
    folder, like every path of luigi.cfg), else ``$MLFLOW_TRACKING_URI``."""
    return given or tracking_uri() or os.environ.get("MLFLOW_TRACKING_URI") or None


def export_mlflow_command(args: argparse.Namespace) -> int:
    """export-mlflow: exit 0 when every version is mirrored, 1 when one failed, 2 without a tracking URI or
    without the ``mlflow`` extra."""
    uri = mlflow_tracking_uri(args.tracking_uri)
    if uri is None:
        raise UsageError(
            "export-mlflow: no MLflow tracking URI: pass --tracking-uri URI, or set [mlflow] tracking_uri in "
            "luigi.cfg, or $MLFLOW_TRACKING_URI"
        )
    require_extra("mlflow")  # before the registry is opened: one line naming the extra to install
    from tripduration.registry.mlflow.export import export_registry, format_summary

    result = export_registry(model_registry(args.color), uri, args.artifact_location)
    print(json.dumps(result, indent=2) if args.json else format_summary(result), flush=True)
    return 1 if result["errors"] else 0


def registry_command(args: argparse.Namespace, prog: str) -> int:
    """serve / models / rollback on the registry of ``--color``."""
    registry = model_registry(args.color)
    if args.command == "serve":
        return serve_command(registry, args)
    if args.command == "models":
        return models_command(registry, as_json=args.json)
    return rollback_command(registry, args.version, args.reason, force=args.force, prog=prog)


def serve_command(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from tripduration.service.server import ServeOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = ServeOptions(
        args.host,
        args.port,
        args.workers,
        args.limit_concurrency,
        keep_alive=args.keep_alive,
        body_timeout=args.body_timeout,
    )
    return serve(registry, options, announce=lambda line: print(line, flush=True))


def models_command(registry: ModelRegistry, as_json: bool = False) -> int:
    """List the valid versions and name every problem (bad pointer, incomplete folder, failed sha256...).

    Exit 0 whenever the listing itself could be made, problems included: ``models`` is how an operator
    inspects a damaged registry, so it must not fail on what it reports; scripts check ``problems`` in
    ``--json`` (empty when the registry is sound). The commands that use a model refuse bad ones themselves.
    """
    inventory = registry.inventory()
    rows, problems = inventory["versions"], inventory["problems"]
    if as_json:
        print(json.dumps(inventory, indent=2))
        return 0
    if not rows and not problems:
        print(f"no versions registered under {registry.home}")
        return 0
    if rows:
        print(f"{'version':8} {'status':11} {'algorithm':15} {'test':8} {'rmse':>7} {'base':>7}  reason")
    for r in rows:
        print(
            f"{r['version']:8} {r['status']:11} {r['algorithm'] or '':15} {r['test_month'] or '':8} "
            f"{_number(r['test_rmse']):7.3f} {_number(r['baseline_rmse']):7.3f}  {_reason(r)}"
        )
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem['problem']}")
    return 0


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _reason(row: dict) -> str:
    """The gate's reason, and for a production version set by a rollback, the rollback's reason too."""
    text = f"gate: {row['gate_reason']}" if row["gate_reason"] else "gate: none recorded"
    if row["rollback_reason"] is not None:
        forced = " (forced past the gate)" if row["forced"] else ""
        text += f" | rollback{forced}: {row['rollback_reason']}"
    return text


def registered_versions(registry: ModelRegistry) -> tuple[list[str], list[str]]:
    """(complete versions, incomplete folders), without the registry's warning line per incomplete folder:
    a refusal is one line, and it names them itself."""
    store_log = logging.getLogger(ModelRegistry.__module__)
    level = store_log.level
    store_log.setLevel(logging.ERROR)
    try:
        return registry.versions(), registry.incomplete_versions()
    finally:
        store_log.setLevel(level)


def rollback_command(
    registry: ModelRegistry, version: str, reason: str, force: bool = False, prog: str = "tripduration"
) -> int:
    """Point production at ``version``. Exit 2 with one line for a version that is not registered (checked
    before the registry is locked or written) or one the gate rejected without --force."""
    registered, incomplete = registered_versions(registry)
    if version not in registered:
        known = ", ".join(registered) if registered else "none yet"
        stray = f"; incomplete folders: {', '.join(incomplete)}" if incomplete else ""
        raise UsageError(
            f"rollback: argument version: {version} is not a registered version of {registry.name} "
            f"(registered: {known}{stray}; see: {prog} models)"
        )
    try:
        pointer = registry.rollback(version, reason, force=force)
    except GateRejectedError as exc:
        print(f"{prog} rollback: {exc}", file=sys.stderr)
        return BAD_ARGUMENTS
    if pointer.get("unchanged"):
        print(f"{version} is already in production: nothing changed, nothing recorded")
        return 0
    was = pointer["previous_version"] or ("unreadable production.json" if "previous_pointer_error" in pointer else None)
    forced = " [forced past the gate's rejection]" if pointer.get("forced") else ""
    print(f"production is now {pointer['version']} (was {was}){forced}: {reason}")
    for line in follow_registry(registry):  # [mlflow] tracking_uri set: the aliases follow
        print(line)
    return 0
