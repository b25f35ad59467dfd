"""``healtrace records …``: load FHIR Bundles into the record store, generate synthetic ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from healtrace.errors import InputError
from healtrace.records._fhir_resources import load_json
from healtrace.records.fhir_store import LoadReport, open_fhir_store
from healtrace.storage.database import Database

records_app = typer.Typer(no_args_is_help=True, help="Patient records (FHIR)")

#: carebundle's profiles, and ``mixed``: a cohort drawn by prevalence.
PROFILE_CHOICES = ("mixed", "healthy", "type2_diabetes", "hypertension", "ckd_stage3", "anaemia")


def _summary_line(report: LoadReport, tenant: str) -> str:
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(report.by_type.items()))
    return f"Loaded {len(report.stored)} resources into tenant {tenant!r}" + (
        f": {counts}" if counts else ""
    )


async def _load(data: Any, tenant: str) -> LoadReport:
    from healtrace.config import Settings

    settings = Settings()
    db = Database(settings.resolved_database_url)
    store = open_fhir_store(settings, db)
    try:
        if settings.fhir.backend == "embedded":
            await db.migrate()
        if isinstance(data, dict) and data.get("resourceType") == "Bundle":
            return await store.put_bundle(data, tenant_id=tenant)
        rid = await store.put(data, tenant_id=tenant)
        kind = data.get("resourceType") if isinstance(data, dict) else ""
        return LoadReport(stored=[f"{kind}/{rid}"])
    finally:
        await store.aclose()
        await db.dispose()


@records_app.command("load")
def load(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A FHIR Bundle (or one resource)")
    ],
    tenant: Annotated[str, typer.Option(help="The tenant (hospital) the records belong to")] = (
        "default"
    ),
) -> None:
    """Store a Bundle's valid entries and list the others with their first problem.

    Exits 1 when the file is not JSON or not a usable Bundle; entries that fail
    validation are reported and skipped.
    """
    from healtrace.config import Settings

    limit = Settings().fhir.max_bundle_bytes
    try:
        data = load_json(bundle.read_bytes(), max_bytes=limit)
        report = asyncio.run(_load(data, tenant))
    except InputError as exc:
        typer.echo(f"{bundle}: {exc.message('en')}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(_summary_line(report, tenant))
    for error in report.errors:
        kind = f" {error.resource_type}" if error.resource_type else ""
        typer.echo(f"entry[{error.index}]{kind}: {error.message}", err=True)
    if report.errors:
        typer.echo(f"{len(report.errors)} entries were not loaded", err=True)


@records_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the Bundle (JSON)")],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="Number of patients")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same patients, byte for byte")] = 42,
    profile: Annotated[str, typer.Option(help=f"One of {', '.join(PROFILE_CHOICES)}")] = "mixed",
) -> None:
    """Write synthetic patients (carebundle: coherent labs, conditions, medications) as one
    transaction Bundle, ready for ``healtrace records load``."""
    import carebundle
    from carebundle.models.r4 import Bundle

    if profile not in PROFILE_CHOICES:
        raise typer.BadParameter(
            f"choose one of {', '.join(PROFILE_CHOICES)}", param_hint="--profile"
        )
    if profile == "mixed":
        bundles = carebundle.generate_cohort(count=count, seed=seed)
    else:
        bundles = [
            carebundle.generate_bundle(profile=profile, seed=seed, index=i, sex=("F", "M")[i % 2])
            for i in range(count)
        ]
    entries = [entry for one in bundles for entry in one.entry or []]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(carebundle.to_json(Bundle(type="transaction", entry=entries)) + "\n")
    typer.echo(f"Wrote {count} synthetic patients ({len(entries)} resources) to {out}")
