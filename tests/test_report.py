"""`fkaggle report`: one self-contained HTML page, opened in a REAL browser (headless Chromium
through Selenium and Debian's chromedriver), parsed strictly (html5lib), on a real workspace:
real-data runs, `cv` pictures, blends, an upload scored by the fake Kaggle through the real
client, a broken run; and with zero runs and with a hundred runs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, missing, run_cli, write_csv

pytestmark = [pytest.mark.browser]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("FKAGGLE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium (a missing browser fails in CI: `make test` installs it)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small):
    """Two real-data runs with their `cv` pictures, a blend and a single-run submission, the data check."""
    ws = tmp_path_factory.mktemp("report_ws")
    train = write_csv(ws / "train.csv", small["x_train"], small["y_train"])
    test = write_csv(ws / "test.csv", small["x_test"], small["y_test"])
    data = ["--train", str(train), "--test", str(test)]
    for run, model in (("lenet", "lenet5"), ("cnn4", "cnn4")):
        res = run_cli(
            "fold-train",
            "--model",
            model,
            "--folds",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--run",
            run,
            "--no-progress",
            *data,
            cwd=ws,
        )
        assert res.returncode == 0, res.stderr
    for args in (
        ["cv", "lenet", "cnn4"],
        ["blend", "lenet", "cnn4", "--method", "mean"],
        ["blend", "cnn4"],
        ["data", "check"],
    ):
        res = run_cli(*args, *data, cwd=ws)
        assert res.returncode == 0, res.stderr
    return ws, data


def _open(driver, page: Path) -> dict:
    """Load the page, open every collapsed section, wait for the images; what the browser shows."""
    driver.get(page.resolve().as_uri())
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    deadline = time.monotonic() + 30
    while (
        not driver.execute_script("return Array.from(document.images).every(i => i.complete)")
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    return driver.execute_script(
        """return {title: document.title,
                   h2: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
                   runs: Array.from(document.querySelectorAll('#runs-table tbody tr')).map(r => r.innerText),
                   broken: document.querySelectorAll('#runs-table tr.broken').length,
                   blends: Array.from(document.querySelectorAll('#blends-table tbody tr')).map(r => r.innerText),
                   uploads: Array.from(document.querySelectorAll('#uploads-table tbody tr')).map(r => r.innerText),
                   images: document.images.length,
                   unloaded: Array.from(document.images)
                       .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
                   links: Array.from(document.querySelectorAll('#details a')).map(a => a.href),
                   text: document.body.innerText}"""
    )


def _strict_parse(page: Path) -> None:
    import html5lib

    html5lib.HTMLParser(strict=True).parse(page.read_text())  # raises on the first parse error


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(900, height), 6000))
    target = ARTIFACTS / name
    driver.save_screenshot(str(target))
    driver.set_window_size(1280, 900)
    return target


@pytest.mark.slow
def test_report_of_a_real_workspace_in_a_browser(workspace, fake_kaggle, browser):
    ws, data = workspace
    slug = ["--slug", "fashion-mnist", *data]
    sub = run_cli("submit", "submissions/blend-mean.csv", "-m", "mean of two", *slug, cwd=ws, env=fake_kaggle.env)
    assert sub.returncode == 0, sub.stderr
    fake_kaggle.submissions[0].update(status="COMPLETE", publicScore="0.81000")  # Kaggle scores it
    assert run_cli("submissions", *slug, cwd=ws, env=fake_kaggle.env).returncode == 0
    broken = ws / "oof" / "broken"
    shutil.copytree(ws / "oof" / "cnn4", broken)
    (broken / "manifest.json").write_text('{"schema": 2, "run": "broken"')  # cut short by a full disk

    res = run_cli("report", "--json", cwd=ws)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (
        out["html"] == "oof/report.html"
        and out["runs"] == 3
        and out["complete_runs"] == 2
        and out["broken_runs"] == ["broken"]
    )
    assert out["blends"] == 2 and out["uploads"] == 1
    page = ws / out["html"]
    _strict_parse(page)

    seen = _open(browser, page)
    shot = _screenshot(browser, "report.png")
    assert seen["title"] == f"fkaggle report: {ws.name}"
    assert [h.split(" (")[0] for h in seen["h2"]] == [
        "Summary",
        "Runs",
        "Blends and submission files",
        "Autopilot",
        "Submissions to Kaggle",
        "Per run",
        "OOF correlation",
        "Data",
    ]
    manifests = {r: json.loads((ws / "oof" / r / "manifest.json").read_text()) for r in ("lenet", "cnn4")}
    ranked = sorted(manifests, key=lambda r: -manifests[r]["cv"]["acc"])
    assert [row.split("\t")[1] for row in seen["runs"]] == [*ranked, "broken"]  # ranked by CV, the broken run last
    assert f"{100 * manifests[ranked[0]]['cv']['acc']:.2f}%" in seen["runs"][0]
    assert seen["broken"] == 1 and "broken:" in seen["runs"][2]
    mean = next(b for b in seen["blends"] if b.startswith("blend-mean"))
    assert f"{100 * manifests[ranked[0]]['cv']['acc']:.2f}%" in mean  # the best single run's CV beside the blend's
    assert "0.81000" in seen["uploads"][0] and "match" in seen["uploads"][0] and "complete" in seen["uploads"][0]
    # every picture is in the page and decodes: 2 runs x (curves, confusion, predictions), CV-vs-public, correlation,
    # samples
    assert seen["images"] == 9 and seen["unloaded"] == [], seen["unloaded"]
    assert shot.stat().st_size > 50_000


def test_report_with_zero_runs_says_what_to_do_first(tmp_path, browser):
    res = run_cli("report", "--out", "site/index.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wrote site/index.html") and "0 runs" in res.stdout
    page = tmp_path / "site" / "index.html"
    _strict_parse(page)
    seen = _open(browser, page)
    assert "Start here" in seen["h2"] and "fkaggle auto --time-limit 20m" in seen["text"]
    assert seen["runs"] == [] and seen["unloaded"] == []


def test_report_with_a_hundred_runs_stays_small_and_readable(workspace, tmp_path, browser):
    ws, _ = workspace
    many = tmp_path / "many"
    shutil.copytree(ws / "oof" / "lenet", many / "oof" / "lenet")
    for i in range(100):  # the same finished run under 100 names: every one verifies
        run = many / "oof" / f"trial-{i:03d}"
        shutil.copytree(many / "oof" / "lenet", run)
        manifest = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**manifest, "run": run.name}))
    started = time.perf_counter()
    res = run_cli("report", "--json", cwd=many)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    print(f"report of 101 runs: {time.perf_counter() - started:.1f}s, {out['bytes'] / 1e6:.1f} MB")
    seen = _open(browser, many / out["html"])
    assert len(seen["runs"]) == 101 and seen["unloaded"] == []
    # the best 30 runs' pictures are embedded, the other 71 link to their files (which exist)
    assert seen["images"] == 30 + 1  # + the correlation heatmap (the best 12 runs)
    assert len(seen["links"]) == 71 and all(Path(link.removeprefix("file://")).is_file() for link in seen["links"])
