"""The Train page, end to end in headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium): log in with a token, walk the three steps, train for two epochs, watch the progress
bar reach 100 %, open the logs, the history, a benchmark with its confusion matrix and the
cluster view. A screenshot of each step is saved under the test's folder and checked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, DRIVER, HANG_S
from tests.test_training_service import DEFAULTS, start, toy_project, wait

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (bash .ci/setup installs them)"
)


def until(driver, check, timeout_s: float = HANG_S, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check(driver)
            if value:
                return value
        except Exception:  # the element is not there yet
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; error box: {error_text(driver)!r}")


def error_text(driver) -> str:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


def test_train_from_the_page_watch_progress_logs_history_benchmark_cluster(service, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    shots = tmp_path / "screenshots"
    shots.mkdir()
    taken: list[Path] = []

    def shot(name: str, heading: str) -> None:
        headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2, h3") if h.is_displayed()]
        assert heading in headings, (name, headings)
        path = shots / f"{len(taken) + 1:02d}-{name}.png"
        assert browser.save_screenshot(str(path))
        taken.append(path)

    def by_id(element_id: str):
        return browser.find_element(By.ID, element_id)

    def click(element_id: str) -> None:
        """Click once the element is shown and enabled: a slow page may still be switching views."""
        until(
            browser,
            lambda d: by_id(element_id).is_displayed() and by_id(element_id).is_enabled(),
            what=f"#{element_id} to be clickable",
        )
        by_id(element_id).click()

    def options_loaded() -> None:
        """The wizard is idle (not aria-busy) and shows this project's options (its custom script)."""
        until(
            browser,
            lambda d: (
                by_id("train-view").get_attribute("aria-busy") == "false"
                and [o.get_attribute("value") for o in Select(by_id("script")).options] == ["", "tagger"]
            ),
            what="this project's options (its custom script)",
        )

    def choose(element_id: str, value: str) -> None:
        """Pick an option, again if the list was rebuilt under the click, until the pick holds."""

        def picked(d) -> bool:
            Select(by_id(element_id)).select_by_value(value)
            return by_id(element_id).get_attribute("value") == value

        until(browser, picked, what=f"#{element_id} to take {value!r}")

    def set_value(element_id: str, value: str) -> None:
        until(browser, lambda d: by_id(element_id).is_displayed(), what=f"#{element_id} to be shown")
        field = by_id(element_id)
        field.clear()
        field.send_keys(value)

    def parameters(epochs: str) -> None:
        set_value("epochs", epochs)
        set_value("learning_rate", "0.01")
        set_value("batch_size", "4")

    def refused(words: str, what: str) -> None:
        click("train-button")
        until(browser, lambda d: words in error_text(d), what=what)

    def picture_shown(element_id: str, what: str) -> None:
        until(
            browser,
            lambda d: d.execute_script(f"return document.getElementById('{element_id}').naturalWidth") > 100,
            what=what,
        )

    project = toy_project(service)
    with service.client() as http:  # a classification model beside it, for a confusion matrix
        classification = start(http, project, types=["classification"], params={**DEFAULTS, "epochs": 1}, cpus=1)
        assert (
            http.post(f"/api/projects/{project}/scripts", json={"name": "tagger", "source": "print(1)\n"}).status_code
            == 201
        )

    browser.get(service.url + "/")
    assert browser.current_url.endswith("/ui/")
    set_value("token", "not-a-token")
    by_id("login-form").submit()
    until(browser, lambda d: error_text(d) == "invalid token", what="the API's 401 in the error box")
    shot("login-refused", "Log in")
    set_value("token", service.token)
    by_id("login-form").submit()
    until(browser, lambda d: by_id("nav").is_displayed() and by_id("type").text, what="the wizard")
    choose("project-picker", project)
    options_loaded()  # the page shows the previous options until this project's arrive

    choose("type", "ner")
    assert [o.text for o in Select(by_id("script")).options] == ["labtrain's trainer", "tagger"]
    assert "train NER only" in by_id("script-note").text
    choose("embeddings", "bilstm")
    shot("step-1-type", "Train a model")
    click("next")
    parameters("0")
    shot("step-2-parameters", "Data")
    click("next")
    until(browser, lambda d: by_id("deploy").is_displayed(), what="the last step's deploy box")
    assert not by_id("gpu-label").is_displayed()  # no GPU here
    click("deploy")
    shot("step-3-after-training", "Train a model")
    refused("epochs=0", "the API's 422 for epochs=0")
    click("back")
    set_value("epochs", "2")
    click("next")
    click("train-button")
    until(browser, lambda d: by_id("run").is_displayed(), what="the run panel")
    until(
        browser,
        lambda d: by_id("progress-bar").get_attribute("aria-valuenow") == "100",
        what="the progress bar at 100 %",
    )
    assert "succeeded" in by_id("run-status").text and f"model ner_{project}," in by_id("run-status").text
    shot("progress-100", "Training #" + by_id("run-id").text.lstrip("#"))
    click("show-logs")
    until(browser, lambda d: "TEST ENTITY" in by_id("logs").text, what="the log")
    lines = [line.split()[0] for line in by_id("logs").text.splitlines() if line.strip()]
    table = lines.index("TEST")
    assert sorted(lines[table + 1 : table + 3]) == ["LOC", "PER"] and lines[table + 3] == "micro"  # in order
    shot("logs", "Training #" + by_id("run-id").text.lstrip("#"))

    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="history"]').click()
    rows = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr"), what="history rows")
    assert "manual" in rows[0].text and "succeeded" in rows[0].text and f"ner_{project} (F1" in rows[0].text
    shot("history", "History")

    with service.client() as http:
        assert wait(http, classification["id"])["status"] == "succeeded"
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="models"]').click()
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models tbody tr")) == 2, what="both models")
    assert "deployed" in browser.find_element(By.CSS_SELECTOR, "#models tbody").text
    for row in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr"):
        if row.text.startswith(f"classification_{project}"):
            row.find_element(By.TAG_NAME, "button").click()
    until(browser, lambda d: "travel" in by_id("per-label").text, what="the per-label table")
    picture_shown("confusion", "the confusion matrix picture")
    shot("benchmark", "Benchmark of " + f"classification_{project}_topic")

    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="cluster"]').click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#nodes tbody tr"), what="the nodes")
    assert by_id("dashboard").get_attribute("href").startswith("http")
    assert "CPU" in by_id("resources").text and "training:ner" in by_id("licenses").text
    shot("cluster", "Cluster")

    # a parameter search and a train-curve from the same wizard: the API's words for bad ones, then a curve
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="train"]').click()
    options_loaded()  # the page shows the previous options until this project's arrive
    choose("embeddings", "bilstm")
    click("next")
    parameters("1")
    browser.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="tune"]').click()
    set_value("tune_trials", "0")
    click("next")
    refused("tune.trials", "the API's 422 for 0 trials")
    click("back")
    browser.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="curve"]').click()
    set_value("curve_points", "50")
    click("next")
    refused("deploy does not apply", "the 422 for deploying a curve")  # 'deploy' is still ticked from before
    click("deploy")
    refused("at least two different percentages", "the 422 for one point")
    click("back")
    set_value("curve_points", "50,100")
    click("next")
    click("train-button")
    until(browser, lambda d: by_id("curve-verdict").is_displayed(), what="the curve's verdict")
    assert "50 % (" in by_id("curve-verdict").text and "100 % (" in by_id("curve-verdict").text
    picture_shown("curve", "the curve's plot")
    shot("curve", "Training #" + by_id("run-id").text.lstrip("#"))
    with service.client() as http:
        sources = [t["source"] for t in http.get(f"/api/projects/{project}/trainings").json()]
        assert sources.count("curve") == 1 and "tuning" not in sources  # the refused requests left nothing

    assert error_text(browser) == ""
    for path in taken:  # real pictures of a real page: PNG, and not one flat colour
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 8_000, path
    print(f"screenshots: {shots}")
