"""Lab interpretation over REST and the CLI, including bad input."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from typer.testing import CliRunner

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.cli import app
from healtrace.config import Settings
from healtrace.storage import Database

REPORT = """血红蛋白 HGB 98 g/L (130-175)
Glucose, fasting 126 mg/dL
K+ 6.8 mmol/L ↑
Creatinine 1.2 mg/dL (0.7 - 1.3)
"""


@pytest.fixture
async def client(settings: Settings) -> httpx.AsyncClient:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("labs"))[1]
    await db.dispose()
    return httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def test_text_and_fhir_over_rest(settings: Settings, client: httpx.AsyncClient) -> None:
    async with LiveServer(create_app(settings, model=DemoModel())) as live, client:
        r = await client.post(
            f"{live.http}/v1/labs/interpret", json={"text": REPORT, "sex": "M", "age": 60}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"results", "derived", "patterns", "warnings", "urgent"}
        flags = {x["loinc"]: (x["flag"], x["critical"]) for x in body["results"]}
        assert flags["2823-3"] == ("HH", True) and body["urgent"] is True
        assert round(body["derived"]["egfr"]["value"]) == 69
        fhir = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "valueQuantity": {"value": 4.1, "code": "mmol/L"},
        }
        r = await client.post(f"{live.http}/v1/labs/interpret", json={"fhir": fhir})
        assert r.json()["results"][0]["flag"] == "N"


async def test_bad_input_gets_clear_errors(settings: Settings, client: httpx.AsyncClient) -> None:
    noise = "".join(random.Random(1).choices("abc xyz 0123456789./-\n", k=10_000_000))
    async with LiveServer(create_app(settings, model=DemoModel())) as live, client:
        url = f"{live.http}/v1/labs/interpret"
        r = await client.post(url, json={}, headers={"Accept-Language": "zh-CN"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "labs_no_results"
        assert "化验" in r.json()["error"]["message"]
        r = await client.post(url, json={"text": "🙂 hello there, no numbers"})
        assert r.json()["error"]["code"] == "labs_no_results"
        r = await client.post(url, json={"text": noise})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_event"
        r = await client.post(url, json={"fhir": {"resourceType": "Observation"}})
        assert r.status_code == 422
        async with httpx.AsyncClient() as anonymous:
            r = await anonymous.post(url, json={"text": REPORT})
        assert r.status_code == 401
        # The service is still there.
        r = await client.post(url, json={"text": "Na 140 mmol/L"})
        assert r.status_code == 200


def test_cli_prints_flags_and_json(tmp_path: object) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["labs", "interpret", "-", "--sex", "M", "--age", "60"], input=REPORT
    )
    assert result.exit_code == 0, result.output
    assert "HH" in result.output and "CRITICAL" in result.output and "egfr" in result.output
    result = runner.invoke(app, ["labs", "interpret", "-", "--json"], input="K 6.8 mmol/L")
    assert json.loads(result.output)["results"][0]["critical"] is True
    result = runner.invoke(app, ["labs", "interpret", "-"], input="nothing here")
    assert result.exit_code == 2
