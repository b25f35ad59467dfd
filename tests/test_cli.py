from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from healtrace import __version__
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTRACE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "healtrace", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    out = _cli("version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == __version__


def test_offline_chat_in_process(tmp_path: Path) -> None:
    out = _cli("chat", "--offline", "What is my BMI?", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "[tool body_mass_index" in out.stdout and "healtrace-demo" in out.stdout
    assert (tmp_path / "data" / "healtrace.db").exists()


def test_keys_create_prints_a_working_key(tmp_path: Path) -> None:
    out = _cli("keys", "create", "hospital-backend", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("ht_")


async def test_chat_against_a_running_server(tmp_path: Path, settings: Settings) -> None:
    settings.dev_key = True
    async with LiveServer(create_app(settings, model=DemoModel())) as live:
        key = (settings.data_dir / "dev-api-key").read_text().strip()
        out = await asyncio.to_thread(
            _cli, "chat", "--url", live.ws, "--key", key, "hello", cwd=tmp_path
        )
    assert out.returncode == 0, out.stderr
    assert "This is the HealTrace demo model" in out.stdout
    assert "session " in out.stderr
