"""A real JupyterLab server and a headless Chromium driven by Playwright, shared by the session."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

# Debian's Chromium: Playwright's own browser downloads are not used.
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_TIMEOUT = 60.0
_SERVER_LOG = pytest.StashKey[Path]()


@dataclass(frozen=True)
class LabServer:
    url: str
    root: Path  # the server's root dir: notebooks copied here can be opened at /lab/tree/NAME
    store_home: Path  # MLOPS_NB_HOME of every kernel the server starts
    log: Path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and the server log go; kept after the run for CI and for the docs."""
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_settings(settings: Path) -> None:
    # No "Would you like to get notified about Jupyter news?" toast over the screenshots,
    # and no request to the internet for news or updates.
    plugin = settings / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True)
    notification = plugin / "notification.jupyterlab-settings"
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer within {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM lets the server shut its kernels down; SIGKILL only if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"JupyterLab ignored SIGTERM and was killed. Its log:\n{log.read_text()}")


@pytest.fixture(scope="session")
def lab(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[LabServer]:
    """A headless JupyterLab on a free port, no token, isolated from the user's Jupyter set-up."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    _write_settings(settings)
    store_home = tmp_path_factory.mktemp("mlops_nb_home")
    port = _free_port()
    options = [
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",  # fail rather than silently listen on another port
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        # window.jupyterapp: read the notebook model (execution counts, outputs, kernel status),
        # which the DOM does not always show (collapsed inputs, stderr versus error outputs).
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        options.append("--allow-root")
    env = dict(
        os.environ,
        MLOPS_NB_HOME=str(store_home),
        # Ignore the user's Jupyter set-up: a password in ~/.jupyter, or a "python3" kernel in
        # ~/.local/share/jupyter that runs another Python than this one.
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
    )
    log = artifacts / "jupyterlab-server.log"
    request.config.stash[_SERVER_LOG] = log
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", *options],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, url, log)
        yield LabServer(url=url, root=root, store_home=store_home, log=log)
    finally:
        _stop(process, log)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    # Chromium's sandbox needs user namespaces, which a root shell in a container rarely has.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the server's log to a failing browser test: the cause is often on the server side."""
    report: pytest.TestReport = yield
    log = item.config.stash.get(_SERVER_LOG, None)
    if report.failed and log is not None and log.exists():
        report.sections.append(("JupyterLab server log", log.read_text(errors="replace")[-20_000:]))
    return report
