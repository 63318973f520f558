"""The dashboard in a real headless browser (Debian's chromium, driven by selenium through
chromedriver) against a loopback server this test starts: the run list renders, a run page
draws its curves and samples and follows a live run without a reload, the compare view lays
runs on one axis, and the browser logs no console error. Screenshots go to a folder under
tmp and, when CORRAL_ARTIFACTS is set, there too. These run in CI, never skip."""
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from dashboard_runs import metric_row, real_runs, synthetic_run

from corral.serve.dashboard import create_dashboard_app

CHROMEDRIVER, CHROMIUM = "/usr/bin/chromedriver", "/usr/bin/chromium"
INSTALL = "apt-get install chromium chromium-driver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    root = work / "runs"
    real_runs(root, work)
    synthetic_run(root, "grpo-math", method="grpo", steps=120, seed=2)
    synthetic_run(root, "sft-math", method="sft", steps=120, seed=0)
    synthetic_run(root, "grpo-live", method="grpo", steps=40, seed=1, finished=False)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_dashboard_app(root), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "the dashboard server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", root
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def driver():
    missing = [p for p in (CHROMEDRIVER, CHROMIUM) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: the browser tests need Debian's chromium "
                    f"and its driver; run `{INSTALL}`", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-gpu"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("CORRAL_ARTIFACTS"):
        folders.append(Path(os.environ["CORRAL_ARTIFACTS"]) / "dashboard")
        folders[-1].mkdir(parents=True, exist_ok=True)

    def save(driver, name: str, height: int = 1000) -> None:
        driver.set_window_size(1400, height)
        driver.save_screenshot(str(folders[0] / f"{name}.png"))
        driver.set_window_size(1400, 1000)
        for folder in folders[1:]:
            shutil.copy(folders[0] / f"{name}.png", folder / f"{name}.png")
        assert (folders[0] / f"{name}.png").stat().st_size > 0
    return save


def wait_for(driver, script: str, timeout: float = 10):
    """Poll a JS expression until it is truthy; its value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}\n{driver.page_source[:2000]}")


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_run_list_renders_and_filters(server, driver, shots):
    url, _ = server
    driver.get(url + "/")
    wait_for(driver, "document.querySelectorAll('#runs tbody tr').length >= 6")
    names = driver.execute_script(
        "return [...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run)")
    assert {"sft-a", "rft-a", "ev", "grpo-math", "sft-math", "grpo-live"} <= set(names)
    assert "running" in driver.find_element("css selector", "tr[data-run='grpo-live']").text
    shots(driver, "run-list")
    driver.execute_script("const s = document.querySelector('select[name=method]');"
                          "s.value = 'grpo'; s.onchange();")
    wait_for(driver, "document.querySelectorAll('#runs tbody tr').length === 2")
    assert not console_errors(driver)


def test_run_page_shows_curves_checkpoints_and_samples(server, driver, shots):
    url, _ = server
    driver.get(url + "/#/run/grpo-math")
    wait_for(driver, "document.querySelectorAll('#charts .chart canvas').length >= 4")
    assert int(wait_for(driver, "document.querySelector('#charts').dataset.rows")) == 120
    groups = driver.execute_script(
        "return [...document.querySelectorAll('#charts .chart')].map(c => c.dataset.group)")
    assert {"loss", "reward", "KL", "dev scores", "unseen scores"} <= set(groups)
    painted = driver.execute_script(  # the canvas has ink, not only a blank background
        "const c = document.querySelector('#charts .chart canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
    assert painted > 1000
    wait_for(driver, "document.querySelectorAll('#sample-table tbody tr').length === 10")
    assert "exact: 1" in driver.find_element("css selector", "#sample-table").text
    assert "step-120" in driver.find_element("css selector", "#checkpoints").text
    assert "grpo-math (grpo)" in driver.find_element("css selector", "#lineage").text
    shots(driver, "run-page", height=2300)
    driver.execute_script("[...document.querySelectorAll('.pager button')].pop().click()")
    wait_for(driver, "document.querySelector('.pager').textContent.includes('11–20 of 25')")
    assert not console_errors(driver)


def test_real_runs_pages_render(server, driver):
    url, _ = server
    for name, text in (("sft-a", "step-4"), ("rft-a", "step-2"), ("ev", "arithmetic:dev:")):
        driver.get(url + f"/#/run/{name}")
        driver.refresh()
        wait_for(driver, f"document.body.textContent.includes('{text}')")
        wait_for(driver, "document.querySelectorAll('#charts .chart canvas').length >= 1")
    assert not console_errors(driver)


def test_a_live_run_updates_without_a_reload(server, driver, shots):
    url, root = server
    driver.get(url + "/#/run/grpo-live")
    driver.refresh()
    assert int(wait_for(driver, "document.querySelector('#charts')?.dataset.rows")) == 40
    driver.execute_script("window.__same_page = true")
    with open(root / "grpo-live" / "metrics.jsonl", "a") as f:
        f.write("".join(json.dumps(metric_row(s, "grpo", 1)) + "\n" for s in (41, 42)))
    wait_for(driver, "document.querySelector('#charts').dataset.rows === '42'", timeout=15)
    with open(root / "grpo-live" / "metrics.jsonl", "a") as f:  # a key never seen before
        f.write(json.dumps({**metric_row(43, "grpo", 1), "entropy": 1.25}) + "\n")
    wait_for(driver, "document.querySelector('#charts [data-group=other]') && "
                     "document.querySelector('#charts').dataset.rows === '43'", timeout=15)
    assert driver.execute_script("return window.__same_page") is True  # no reload
    assert "live" in driver.find_element("id", "live").text
    assert not console_errors(driver)


def test_compare_view_lays_runs_on_one_axis(server, driver, shots):
    url, _ = server
    driver.get(url + "/#/compare?runs=grpo-math,grpo-live,sft-math,rft-a&metric=reward")
    driver.refresh()
    wait_for(driver, "document.querySelectorAll('#compare-chart canvas').length === 1")
    legend = driver.find_element("css selector", "#compare-chart").text
    assert all(n in legend for n in ("grpo-math", "grpo-live", "sft-math", "rft-a"))
    assert driver.execute_script("return document.querySelector('#metric').value") == "reward"
    driver.execute_script("const m = document.querySelector('#metric');"
                          "m.value = 'loss'; m.onchange();")
    wait_for(driver, "location.hash.includes('metric=loss')")
    wait_for(driver, "document.querySelector('#compare-chart .chart')?.dataset.group "
                     "=== 'loss'")
    shots(driver, "compare")
    assert not console_errors(driver)
