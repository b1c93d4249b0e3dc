"""The Dagster UI driven by a real headless Chromium (DevTools protocol over a websocket): the asset graph lists
every asset, a materialization launched from the UI succeeds, and an asset's page shows the metadata and check
results of a run `rrec run` recorded in the project's instance.

Chromium comes from the Debian packages (`make test` runs `apt-get install -y chromium` when it is missing);
without it the test skips and says so."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium); "
                                                         "make test installs it where apt can")
ASSETS = ("raw_interactions", "validated_interactions", "item_text_embeddings", "pretrained_recommender",
          "pretrain_evaluation", "cold_start_evaluation", "distillation", "gan_samples", "adversarial_recommender",
          "poisoning_evaluation", "robustness_evaluation", "recommendations")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s")


class Page:
    """One Chromium tab over the DevTools protocol (what Playwright does underneath, without the download)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        port = _free_port()
        self.proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",  # type: ignore[list-item]
                                      f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                                      "--window-size=1400,900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_http(f"http://127.0.0.1:{port}/json/version", 60)
        tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        self.ws = connect([t for t in tabs if t["type"] == "page"][0]["webSocketDebuggerUrl"], max_size=2 ** 26)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, js: str):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True).get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, needles, timeout: float = 90) -> str:
        end, body = time.time() + timeout, ""
        while time.time() < end:
            body = self.text()
            if all(n in body for n in needles):
                return body
            time.sleep(0.5)
        raise AssertionError(f"not on the page after {timeout:.0f}s: {[n for n in needles if n not in body]}\n"
                             f"{body[:1500]}")

    def click_button(self, label: str) -> bool:
        """Click the first button whose text is exactly `label`."""
        return bool(self.eval(f"""(() => {{
            const b = [...document.querySelectorAll('button')].find(x => x.innerText.trim() === {json.dumps(label)});
            if (b) {{ b.click(); return true; }} return false; }})()"""))

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture()
def ui(tmp_path, tiny_bert, monkeypatch):
    """A tiny project with one `rrec run` recorded in .dagster/, and `dagster dev` serving that instance."""
    import yaml
    from conftest import write_tiny_atomic
    from test_pipeline_e2e import tiny_params

    from orchestration.cli import main

    write_tiny_atomic(tmp_path / "data" / "tiny")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params("data/tiny", tiny_bert)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["run", "--select", "*validated_interactions"]) == 0
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / ".dagster"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    dagster = Path(sys.executable).with_name("dagster")
    server = subprocess.Popen([str(dagster), "dev", "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    page = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/server_info", 180)
        page = Page(tmp_path / "chromium-profile")
        yield tmp_path, f"http://127.0.0.1:{port}", page
    finally:
        if page is not None:
            page.close()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_ui_shows_the_graph_launches_a_materialization_and_shows_metadata(ui):
    from dagster import DagsterInstance, DagsterRunStatus

    root, url, page = ui
    shots = root / "screenshots"
    shots.mkdir()
    # the pipeline's group page: with a second group (studies: the poisoning grid) the global lineage shows
    # each group as one collapsed box
    group = f"{url}/locations/__repository__@orchestration.definitions/asset-groups/rrec"
    page.goto(group)
    page.wait_for(["raw_interactions", "distillation", "gan_samples", "recommendations"])
    page.screenshot(shots / "graph.png")
    page.goto(f"{group}/list")  # the lineage abbreviates long names to fit the group's graph; the list does not
    page.wait_for(ASSETS)

    # the CLI's run is in the UI: metadata and check results of validated_interactions
    page.goto(f"{url}/assets/validated_interactions")
    page.wait_for(["n_users", "n_train", "density"])
    page.goto(f"{url}/assets/validated_interactions?view=checks")
    page.wait_for(["expectation_suite", "poisoning_screen", "item_text_sanitizer", "Passed", "blocking"])
    page.screenshot(shots / "checks.png")

    # a materialization launched from the UI runs and succeeds
    instance = DagsterInstance.from_config(str(root / ".dagster"))
    before = {r.run_id for r in instance.get_runs()}
    page.goto(f"{url}/assets/raw_interactions")
    page.wait_for(["Materialize"])
    end = time.time() + 60
    while time.time() < end and not page.click_button("Materialize"):
        page.click_button("Skip")  # the first visit's newsletter dialog
        time.sleep(0.5)
    end = time.time() + 240
    run = None
    while time.time() < end:
        new = [r for r in instance.get_runs() if r.run_id not in before]
        if not new:
            page.click_button("Skip")
            page.click_button("Materialize")
        elif new[0].status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            run = new[0]
            break
        time.sleep(1)
    page.screenshot(shots / "after_launch.png")  # kept in the test's tmp dir for a person to look at
    assert run is not None, "no run launched from the UI finished within 4 minutes"
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    page.goto(f"{url}/runs/{run.run_id}")
    page.wait_for(["raw_interactions", "Success"])
