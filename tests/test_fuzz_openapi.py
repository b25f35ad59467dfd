"""Schemathesis over the service's own OpenAPI schema: every documented operation gets
generated requests (valid ones, with a real API key) and each response must be no 5xx,
a documented status code, the documented content type and match the documented schema.

The app runs in-process (schemathesis' ASGI transport, lifespan included) with the scripted
model, a fake chain registry, fake consent ledger and token minter, and scripted speech
engines, so nothing slow or remote answers. ``HEALTRACE_FUZZ_EXAMPLES`` raises the number
of examples per operation for longer runs (docs/fuzzing.md).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.chain.client import FakeRegistry
from healtrace.config import Settings
from healtrace.handoff.accounts import ClinicianStore
from healtrace.records.ledger import FakeConsentLedger
from healtrace.rewards.minter import FakeTokenMinter
from healtrace.speech.asr import ScriptedASR
from healtrace.speech.engines import SpeechEngines
from healtrace.speech.tts import ScriptedTTS
from healtrace.storage import Database
from healtrace.wechat import WechatConfig
from healtrace.wechat import signature as wechat_signature

EXAMPLES = max(1, int(os.environ.get("HEALTRACE_FUZZ_EXAMPLES", "20")))
#: Read at import: the suite's autouse fixture clears HEALTRACE_* variables for each test.
VERBOSE = bool(os.environ.get("HEALTRACE_FUZZ_VERBOSE"))
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CLINICIAN_PASSWORD = "fuzz-password-1"
WECHAT_TOKEN = "fuzz-token"

#: Operations left out, each with the reason. Nothing else is skipped.
EXCLUDED: dict[str, str] = {}

#: Known gaps: (operation, check) → why it fails and where it must be fixed. A gap listed
#: here is reported in the summary, not failed; anything else fails the test.
_CONSOLE = (
    "healtrace/api/console.py documents no error responses: it needs "
    "responses=error_responses(400, 401, 404, 409, 422, 503) (400 unreadable body, 401 "
    "console_login_required / login_failed, 404 handoff or session not found, 409 handoff "
    "state, 503 draft_failed)"
)
_BODY_400 = (
    "a JSON body that is not UTF-8 makes FastAPI answer 400 {'detail': …}, not HealTrace's "
    "error shape: healtrace/api/app.py must register "
    "app.add_exception_handler(starlette.exceptions.HTTPException, _http.http_error_handler)"
)
#: Known gaps: (operation, check, status or None for any) → why and where to fix it. A gap
#: listed here is reported in the summary, not failed; anything else fails the test.
KNOWN: dict[tuple[str, str, int | None], str] = {
    # Failures understood but not yet fixed: (operation, check, status or None) -> why.
}


@dataclass
class Keys:
    tenant: str
    patient: str = ""
    console_cookie: str = ""
    session_id: str = ""
    evidence_hash: str = ""
    image_id: str = ""


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)


async def _prepare_db(settings: Settings) -> str:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        await ClinicianStore(db).create(
            username="fuzz", display_name="Fuzz Nurse", password=CLINICIAN_PASSWORD
        )
        return (await ChatStore(db).create_api_key("fuzz"))[1]
    finally:
        await db.dispose()


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    # The WeChat callback is served (with a token), so its signature checks are fuzzed
    # instead of a constant ``wechat_disabled``; its message API points nowhere reachable.
    wechat = WechatConfig(enabled=True, token=WECHAT_TOKEN, api_base="http://127.0.0.1:9")
    return settings.model_copy(update={"wechat": wechat})


@pytest.fixture
def app_and_keys(fuzz_settings: Settings) -> Iterator[tuple[Any, Keys]]:
    keys = Keys(tenant=asyncio.run(_prepare_db(fuzz_settings)))
    speech = SpeechEngines(
        fuzz_settings.speech,
        fuzz_settings.models_dir,
        asr=ScriptedASR(lambda audio: "I have a headache."),
        tts=ScriptedTTS(seconds_per_char=0.001),
    )
    app: Any = create_app(
        fuzz_settings,
        model=DemoModel(token_interval_ms=0),
        speech=speech,
        registry=FakeRegistry(),
        consent_ledger=FakeConsentLedger(),
        minter=FakeTokenMinter(),
    )
    try:
        with asgi.get_client(app) as client:
            bearer = {"Authorization": f"Bearer {keys.tenant}"}
            made = client.post("/v1/patients", json={"fhir_patient_id": "fuzz-1"}, headers=bearer)
            assert made.status_code == 201, made.text
            keys.patient = made.json()["api_key"]
            login = client.post(
                "/v1/console/login", json={"username": "fuzz", "password": CLINICIAN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            cookie = login.cookies.get("ht_console")
            assert cookie, login.headers
            keys.console_cookie = cookie
            session = client.post("/v1/sessions", json={}, headers=bearer)
            keys.session_id = session.json()["id"]
            turn = client.post(
                f"/v1/sessions/{keys.session_id}/messages", json={"text": "hi"}, headers=bearer
            )
            assert turn.status_code == 200, turn.text
            keys.evidence_hash = turn.json()["evidence_hash"] or ""
            photo = client.post(
                "/v1/images",
                files={"file": ("photo.png", _png(), "image/png")},
                data={"kind": "photo"},
                headers=bearer,
            )
            assert photo.status_code == 200, photo.text
            keys.image_id = photo.json()["image"]["id"]
        yield app, keys
    finally:
        asgi.shutdown_lifespans()


def _operation(result: Ok[Any] | Err[Any]) -> Any:
    if isinstance(result, Err):
        raise result.err()  # the schema itself is broken
    return result.ok()


def _png() -> bytes:
    """A small photo with some texture, so the image pipeline has something to look at."""
    out = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


AUTH = st.sampled_from(["own", "own", "own", "tenant", "patient", "as_generated"])


def _apply_auth(case: Any, keys: Keys, auth: str) -> None:
    path: str = case.operation.path
    wants_patient = path.startswith(("/v1/me", "/v1/rewards"))
    if auth == "as_generated":
        return
    if auth == "own":
        auth = "patient" if wants_patient else "tenant"
    headers = case.headers if case.headers is not None else {}
    headers.pop("x-api-key", None)
    headers.pop("X-API-Key", None)
    headers["Authorization"] = f"Bearer {keys.patient if auth == 'patient' else keys.tenant}"
    case.headers = headers
    if path.startswith("/v1/console") and path != "/v1/console/login":
        case.cookies = {**(case.cookies or {}), "ht_console": keys.console_cookie}
    if path == "/v1/wechat/callback":
        # Signed as WeChat signs, so the body parser is reached, not only the signature check.
        query = case.query if case.query is not None else {}
        timestamp, nonce = str(query.get("timestamp", "")), str(query.get("nonce", ""))
        query.update(timestamp=timestamp, nonce=nonce)
        query["signature"] = wechat_signature(WECHAT_TOKEN, timestamp, nonce)
        case.query = query


def _use_known_ids(case: Any, keys: Keys, draw: Callable[[st.SearchStrategy[bool]], bool]) -> None:
    """Mostly point path parameters (and the OpenAI model name) at things that exist, else
    nearly every case stops at a 404."""
    if not draw(st.sampled_from([True, True, True, False])):
        return
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "healtrace"
    params = case.path_parameters
    if not params:
        return
    if "session_id" in params:
        params["session_id"] = keys.session_id
    if "record_hash" in params and keys.evidence_hash:
        params["record_hash"] = keys.evidence_hash
    if "image_id" in params:
        params["image_id"] = keys.image_id
    if "model_id" in params:
        params["model_id"] = "healtrace"


def _fuzz_operation(
    operation: Any, app: Any, keys: Keys, tally: Tally, mode: GenerationMode
) -> None:
    label = _label(operation)
    strategy = operation.as_strategy(generation_mode=mode)

    @hypothesis.settings(
        max_examples=EXAMPLES if mode is GenerationMode.POSITIVE else max(1, EXAMPLES // 2),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=strategy, auth=AUTH, data=st.data())
    def run(case: Any, auth: str, data: st.DataObject) -> None:
        _apply_auth(case, keys, auth)
        _use_known_ids(case, keys, data.draw)
        tally.cases[label] += 1
        try:
            response = case.call(app=app)
            tally.statuses[response.status_code] += 1
            tally.by_operation.setdefault(label, Counter())[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                _record(tally, label, failure, case, response.status_code)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing in this operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, label


def _record(tally: Tally, label: str, failure: Failure, case: Any, status: int) -> None:
    key = (label, type(failure).__name__, status)
    if key in tally.failures:
        return
    curl = case.as_curl_command()
    tally.failures[key] = f"{failure.title}: {failure.message[:400]}\n    {curl[:600]}"


def _known(key: tuple[str, str, int]) -> bool:
    label, check, status = key
    return (label, check, status) in KNOWN or (label, check, None) in KNOWN


def test_openapi_operations_conform(
    app_and_keys: tuple[Any, Keys], capsys: pytest.CaptureFixture[str]
) -> None:
    app, keys = app_and_keys
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tally = Tally()
    operations = 0
    # Signing out ends the console login the other console operations use: it goes last.
    found = sorted(
        (_operation(result) for result in schema.get_all_operations()),
        key=lambda op: _label(op) == "POST /v1/console/logout",
    )
    for operation in found:
        if _label(operation) in EXCLUDED:
            continue
        operations += 1
        # Valid requests first, then requests that break the schema (they must be 4xx).
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, app, keys, tally, mode)
    unexpected = {k: v for k, v in tally.failures.items() if not _known(k)}
    seen = {(label, check) for label, check, _status in tally.failures}
    unseen = sorted({(label, check) for label, check, _s in KNOWN} - seen)
    with capsys.disabled():
        print(
            f"\nschemathesis: {operations} operations, {sum(tally.cases.values())} cases, "
            f"{len(tally.failures)} distinct failures ({len(unexpected)} unexpected), "
            f"{len(EXCLUDED)} operations excluded; statuses "
            + ", ".join(f"{s}×{n}" for s, n in sorted(tally.statuses.items()))
        )
        if unseen:
            # A known gap no longer seen may have been fixed: drop it from KNOWN.
            print("  known gaps not seen this run: " + "; ".join(f"{o} {c}" for o, c in unseen))
        if VERBOSE:
            for label, counts in sorted(tally.by_operation.items()):
                print(f"  {label}: " + ", ".join(f"{s}×{n}" for s, n in sorted(counts.items())))
        for key, text in sorted(tally.failures.items()):
            label, check, status = key
            mark = "known" if _known(key) else "NEW"
            # Known gaps in one line each; a new failure with its message and a curl repro.
            print(f"  [{mark}] {label} {check} ({status})" + (f": {text}" if mark == "NEW" else ""))
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
