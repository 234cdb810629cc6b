"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver,
installed by scripts/test) driven by Selenium against the real broker. Every page is written as a
screenshot under target/console-screenshots/ for a reviewer to look at."""

import os
import subprocess
import tempfile
import uuid

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ARM_RG, ROOT

SHOTS = ROOT / "target" / "console-screenshots"
EXCHANGE = "api://AzureADTokenExchange"
DRIVER = os.environ.get("FICUS_CHROMEDRIVER", "")


@pytest.fixture(scope="module")
def browser():
    if not DRIVER:
        pytest.skip("FICUS_CHROMEDRIVER is not set: scripts/test installs chromium-driver and sets it")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("FICUS_CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="ficus-chromium-")
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,1100", f"--user-data-dir={profile}",
        # The broker's certificate is signed by its development CA, which Chromium's store lacks.
        "--ignore-certificate-errors",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def link(broker, reader: bool = False) -> str:
    """A one-time sign-in link from `ficus console`, as a user gets it."""
    args = [broker.binary, "console"] + (["--reader"] if reader else [])
    out = subprocess.run(args, env=broker.env, capture_output=True, text=True, timeout=30, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("https://"))


def sign_in(driver, broker, reader: bool = False):
    driver.delete_all_cookies()
    driver.get(link(broker, reader))
    WebDriverWait(driver, 10).until(expected_conditions.url_contains("/console/applications"))


def shot(driver, name: str, showing=None):
    """Writes the viewport (scrolled to `showing`, an element, when given) as NAME.png."""
    if showing is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", showing)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def new_app(broker, prefix: str) -> dict:
    return broker.admin("POST", "/v1.0/applications", {"displayName": f"{prefix}-{uuid.uuid4().hex[:6]}"})


def fill(driver, values: dict):
    for name, value in values.items():
        field = driver.find_element(By.ID, f"credential-{name}")
        field.clear()
        field.send_keys(value)


def credential_rows(driver) -> list[str]:
    return [row.text for row in driver.find_elements(By.CSS_SELECTOR, "table.credentials tbody tr")]


def submit_and_wait(driver, button, until):
    """Clicks a form's button and waits for the answer's page to satisfy `until(driver)`. While the
    page is being replaced, reading it may fail (a stale element, or chromedriver's "unhandled
    inspector error"): such a read is tried again, until the 10 s run out."""
    button.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(until)


def test_an_admin_signs_in_with_the_link_and_adds_edits_and_deletes_credentials_up_to_the_limit(broker, browser):
    sign_in(browser, broker)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Applications"
    assert "Signed in as ficus-admin (Admin)" in text(browser)
    shot(browser, "applications")

    app = new_app(broker, "console-app")
    page = f"{broker.base}/console/applications/{app['id']}"
    browser.get(page)
    assert "(0 of 20)" in text(browser)
    fill(browser, {"name": "github-main", "issuer": "https://token.actions.githubusercontent.com",
                   "subject": "repo:octo/app:ref:refs/heads/main"})
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#credential-form button[type=submit]"),
                    lambda d: "(1 of 20)" in text(d))
    assert any("github-main" in row and "repo:octo/app:ref:refs/heads/main" in row for row in credential_rows(browser))

    # A field the registry refuses: the message is beside that field, tied to it for screen readers.
    fill(browser, {"name": "x", "issuer": "https://issuer.example", "subject": "s"})
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#credential-form button[type=submit]"),
                    lambda d: d.find_elements(By.ID, "credential-name-error"))
    error = browser.find_element(By.ID, "credential-name-error")
    assert "3-120 characters" in error.text
    name = browser.find_element(By.ID, "credential-name")
    assert name.get_attribute("aria-invalid") == "true"
    assert "credential-name-error" in name.get_attribute("aria-describedby")
    assert browser.find_element(By.ID, "credential-issuer").get_attribute("value") == "https://issuer.example"
    shot(browser, "credential-field-error", showing=error)

    # Edit: the subject changes, the name cannot.
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "a[aria-label='Edit github-main']"),
                    lambda d: "Edit github-main" in text(d))
    assert browser.find_element(By.ID, "credential-name").get_attribute("readonly") is not None
    fill(browser, {"subject": "repo:octo/app:environment:prod"})
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#credential-form button[type=submit]"),
                    lambda d: any("repo:octo/app:environment:prod" in row for row in credential_rows(d)))

    for i in range(19):
        body = {"name": f"branch-{i}", "issuer": "https://issuer.example", "subject": f"s-{i}", "audiences": [EXCHANGE]}
        broker.admin("POST", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", body)
    browser.get(page)
    assert "(20 of 20)" in text(browser)
    fill(browser, {"name": "one-too-many", "issuer": "https://issuer.example", "subject": "s-20"})
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#credential-form button[type=submit]"),
                    lambda d: d.find_elements(By.ID, "credential-form-error"))
    limit = browser.find_element(By.CSS_SELECTOR, "#credential-form #credential-form-error")
    assert "limit of 20" in limit.text, limit.text
    assert len(credential_rows(browser)) == 20
    shot(browser, "credential-limit", showing=limit)

    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[aria-label='Delete branch-0']"),
                    lambda d: "(19 of 20)" in text(d))
    assert len(credential_rows(browser)) == 19 and not any("branch-0 " in row for row in credential_rows(browser))
    shot(browser, "application")

    browser.get(f"{broker.base}/console/activity")
    activity = text(browser)
    assert "Delete federated identity credential" in activity and "ficus-admin" in activity
    shot(browser, "activity")
    browser.get(f"{broker.base}/console/identities")
    assert "uami-demo" in text(browser) and "vm-demo" in text(browser)
    shot(browser, "identities")


def uami_token(broker) -> str:
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    url = f"{broker.mi}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={EXCHANGE}"
    answer = requests.get(url + f"&client_id={uami['properties']['clientId']}", headers={"Metadata": "true"}, timeout=10)
    return answer.json()["access_token"]


def test_a_failed_federated_sign_in_shows_its_diagnosis_and_the_dry_run_explains_it(broker, browser):
    assertion = uami_token(broker)
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    issuer = requests.get(f"{broker.base}/demo/v2.0/.well-known/openid-configuration", verify=broker.ca, timeout=10).json()["issuer"]
    app = new_app(broker, "console-diag")
    near_miss = uami["properties"]["principalId"][:-1] + "0"
    body = {"name": "uami-trust", "issuer": issuer, "subject": near_miss, "audiences": [EXCHANGE]}
    broker.admin("POST", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", body)
    refused = requests.post(f"{broker.base}/demo/oauth2/v2.0/token", verify=broker.ca, timeout=10, data={
        "grant_type": "client_credentials", "client_id": app["appId"], "scope": "api://vault/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion,
    })
    assert refused.status_code == 400 and 700213 in refused.json()["error_codes"]

    sign_in(browser, broker)
    browser.get(f"{broker.base}/console/sign-ins")
    Select(browser.find_element(By.ID, "filter-result")).select_by_value("failure")
    browser.find_element(By.ID, "filter-application").send_keys(app["displayName"])
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"),
                    lambda d: "result=failure" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.sign-ins tbody tr")
    for _ in range(20):  # the log is written in the background
        if rows:
            break
        browser.refresh()
        rows = browser.find_elements(By.CSS_SELECTOR, "table.sign-ins tbody tr")
    assert len(rows) == 1, text(browser)
    rows[0].find_element(By.TAG_NAME, "summary").click()
    reason = rows[0].find_element(By.CSS_SELECTOR, "p.reason").text
    assert "nearest credential 'uami-trust'" in reason and near_miss in reason, reason
    assert "700213" in rows[0].text
    chart = browser.find_element(By.CSS_SELECTOR, "figure.chart svg")
    assert chart.get_attribute("role") == "img" and "1 failed" in browser.find_element(By.ID, "chart-desc").get_attribute("textContent")
    shot(browser, "sign-ins")

    browser.get(f"{broker.base}/console/applications/{app['id']}")
    submit_and_wait(browser, browser.find_element(By.LINK_TEXT, "What would the token endpoint do with an assertion?"),
                    lambda d: d.find_elements(By.ID, "explain-assertion"))
    browser.find_element(By.ID, "explain-assertion").send_keys(assertion)
    browser.find_element(By.ID, "explain-resource").send_keys("api://vault")
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.explain button[type=submit]"),
                    lambda d: d.find_elements(By.CSS_SELECTOR, "section.result"))
    result = browser.find_element(By.CSS_SELECTOR, "section.result")
    assert "uami-trust does not match" in result.text and "AADSTS700213" in result.text, result.text
    assert f"presented '{uami['properties']['principalId']}'" in result.text
    shot(browser, "dry-run", showing=result)


def test_a_reader_sees_nothing_that_changes_anything_and_is_refused_when_posting_anyway(broker, browser):
    app = new_app(broker, "console-reader")
    body = {"name": "kept", "issuer": "https://issuer.example", "subject": "s", "audiences": [EXCHANGE]}
    broker.admin("POST", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", body)
    sign_in(browser, broker, reader=True)
    assert "(Reader)" in text(browser)
    browser.get(f"{broker.base}/console/applications/{app['id']}")
    assert "kept" in text(browser)
    for selector in ["#credential-form", "td.actions", "button[aria-label^='Delete']", "a[aria-label^='Edit']"]:
        with pytest.raises(NoSuchElementException):
            browser.find_element(By.CSS_SELECTOR, selector)
    shot(browser, "reader-application")

    # A form forged in the page (with the session's own CSRF token) is still refused.
    browser.execute_script(
        """const csrf = document.querySelector('input[name=csrf]').value;
        const form = document.createElement('form');
        form.method = 'post'; form.action = arguments[0];
        for (const [k, v] of [['csrf', csrf], ['name', 'sneaky'], ['issuer', 'https://i.example'], ['subject', 's2']]) {
          const input = document.createElement('input'); input.name = k; input.value = v; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();""",
        f"/console/applications/{app['id']}/credentials",
    )
    WebDriverWait(browser, 10).until(lambda d: "Refused" in d.title)
    assert "A Reader's session changes nothing" in text(browser)
    listed = broker.admin("GET", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials")["value"]
    assert [c["name"] for c in listed] == ["kept"]


def test_a_form_posted_without_its_csrf_token_is_refused(broker, browser):
    app = new_app(broker, "console-csrf")
    sign_in(browser, broker)
    browser.get(f"{broker.base}/console/applications/{app['id']}")
    fill(browser, {"name": "no-token", "issuer": "https://issuer.example", "subject": "s"})
    browser.execute_script("document.querySelector('#credential-form input[name=csrf]').remove()")
    browser.find_element(By.CSS_SELECTOR, "#credential-form button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "Refused" in d.title)
    assert "CSRF token" in text(browser)
    assert broker.admin("GET", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials")["value"] == []


def test_every_page_labels_its_fields_orders_its_headings_and_shows_focus(broker, browser):
    app = new_app(broker, "console-a11y")
    sign_in(browser, broker)
    for path in ["/console/applications", f"/console/applications/{app['id']}", f"/console/applications/{app['id']}/explain",
                 "/console/identities", "/console/sign-ins", "/console/activity", "/console/keys"]:
        browser.get(broker.base + path)
        unlabelled = browser.execute_script(
            """return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(f => !(f.id && document.querySelector(`label[for="${f.id}"]`)) && !f.getAttribute('aria-label'))
                 .map(f => f.outerHTML);"""
        )
        assert unlabelled == [], f"{path}: {unlabelled}"
        levels = browser.execute_script(
            "return [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => Number(h.tagName[1]));"
        )
        assert levels[0] == 1 and levels.count(1) == 1, f"{path}: one h1, first: {levels}"
        assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), f"{path}: no level skipped: {levels}"
        # The first Tab reaches the skip link, and the focused element is outlined.
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        assert focused.get_attribute("class") == "skip", f"{path}: {focused.get_attribute('outerHTML')}"
        outline = browser.execute_script("const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];")
        assert outline[0] != "none" and outline[1] != "0px", f"{path}: focus is visible: {outline}"


def key_states(driver) -> list[str]:
    return [row.find_elements(By.TAG_NAME, "td")[1].text for row in driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")]


def test_an_admin_sees_the_signing_keys_states_and_rotates_them(broker, browser):
    sign_in(browser, broker)
    browser.get(f"{broker.base}/console/keys")
    before = key_states(browser)
    assert "current" in before, before
    scheduled, immediate = browser.find_elements(By.CSS_SELECTOR, "form[action='/console/keys/rotate']")
    submit_and_wait(browser, scheduled.find_element(By.TAG_NAME, "button"), lambda d: len(key_states(d)) == len(before) + 1)
    assert key_states(browser).count("next") == 1, key_states(browser)

    # Rotating at once needs the box ticked; the refusal says why, beside the box.
    immediate = browser.find_elements(By.CSS_SELECTOR, "form[action='/console/keys/rotate']")[1]
    submit_and_wait(browser, immediate.find_element(By.TAG_NAME, "button"), lambda d: d.find_elements(By.ID, "rotate-now-error"))
    assert "Tick the box" in browser.find_element(By.ID, "rotate-now-error").text
    assert len(key_states(browser)) == len(before) + 1
    immediate = browser.find_elements(By.CSS_SELECTOR, "form[action='/console/keys/rotate']")[1]
    immediate.find_element(By.ID, "rotate-understood").click()
    submit_and_wait(browser, immediate.find_element(By.TAG_NAME, "button"), lambda d: len(key_states(d)) == len(before) + 2)
    states = key_states(browser)
    assert states.count("current") == 1 and "previous" in states, states
    shot(browser, "keys")
    jwks = requests.get(f"{broker.base}/demo/discovery/v2.0/keys", verify=broker.ca, timeout=10).json()["keys"]
    assert len(jwks) >= len(before) + 2, "every key the page lists as published is in the JWKS"

    browser.get(f"{broker.base}/console/activity")
    assert "Rotate signing key now" in text(browser)
    sign_in(browser, broker, reader=True)
    browser.get(f"{broker.base}/console/keys")
    assert browser.find_elements(By.CSS_SELECTOR, "form[action='/console/keys/rotate']") == []
