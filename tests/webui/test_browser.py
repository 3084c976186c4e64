"""The web page in headless Chromium against the real daemon, with Debian's strongSwan
as a real VPN client: the wizard, users, a live session with its Disconnect button,
and a wrong password showing up under recent failures."""

from __future__ import annotations

import os
import re
import time

import pytest

from .browser_lab import Lab, launch_browser, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ADMIN_PASSWORD = "admin-Passw0rd-long"
IDENTITY = "vpn.ikebox.test"
POOL = "10.123.0.0/24"
ALICE_PW = "alice-Secret-123"
BOB_PW = "bob-Secret-4567"


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    lab = Lab(str(tmp_path))
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, lab):
    ctx = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                              viewport={"width": 1100, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(20000)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    ctx.close()


def wizard(page, lab: Lab) -> None:
    page.goto(lab.url + "/")
    assert page.url.endswith("/setup/password")
    screenshot(page, "1-setup-password")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.fill("input[name=confirm]", ADMIN_PASSWORD)
    page.click("button:has-text('Continue')")
    page.wait_for_url("**/setup/box")
    page.fill("input[name=identity]", IDENTITY)
    page.fill("input[name=pool]", POOL)
    page.fill("input[name=dns]", "10.123.0.1")
    page.fill("input[name=lan]", f"{lab.lan_ip}/32")
    page.fill("input[name=user]", "alice")
    page.fill("input[name=user_password]", ALICE_PW)
    page.fill("input[name=user_confirm]", ALICE_PW)
    screenshot(page, "2-setup-box")
    page.click("button:has-text('Apply')")
    page.wait_for_url(lab.url + "/")
    assert "Setup complete" in page.inner_text("main")


def add_user(page, lab: Lab, name: str, password: str) -> None:
    page.click("nav >> text=Users")
    form = page.locator("#add-user")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=password]").fill(password)
    form.locator("input[name=confirm]").fill(password)
    form.locator("button").click()
    page.wait_for_selector(f"tr[data-user='{name}']")


def download_ca(page) -> str:
    page.click("nav >> text=Status")
    with page.expect_download() as info:
        page.click("text=ikebox-ca.pem")
    with open(info.value.path()) as fh:
        return fh.read()


def test_wizard_users_and_settings(page, lab):
    wizard(page, lab)
    cfg = lab.box.call("config_get")
    assert cfg["box"]["identity"] == IDENTITY and cfg["pool"]["ipv4"] == POOL
    assert cfg["lan"]["subnets"] == [f"{lab.lan_ip}/32"]
    assert [u["name"] for u in lab.box.call("user_list")] == ["alice"]

    # The status page mirrors the daemon: UDP 500/4500 listening, power LED on.
    assert page.get_attribute("[data-led=power]", "data-state") == "on"
    assert "UDP 500 listening" in page.inner_text("#listening")
    assert "UDP 4500 listening" in page.inner_text("#listening")

    add_user(page, lab, "bob", BOB_PW)
    page.locator("tr[data-user=bob] button:has-text('Disable')").click()
    page.wait_for_selector("tr[data-user=bob] button:has-text('Enable')")
    assert {u["name"]: u["enabled"] for u in lab.box.call("user_list")} == \
        {"alice": True, "bob": False}
    screenshot(page, "4-users")

    # A setting the daemon refuses: its reason on the page, its config unchanged.
    page.click("nav >> text=Settings")
    page.fill("#settings input[name=pool]", "10.123.0.0/33")
    page.click("#settings button")
    assert "is not an IPv4 network" in page.inner_text(".flash.error")
    assert lab.box.call("config_get")["pool"]["ipv4"] == POOL
    page.click("nav >> text=Settings")
    page.select_option("#settings select[name=proposals]", "legacy-windows")
    page.click("#settings button")
    assert "Saved" in page.inner_text(".flash.ok")
    assert lab.box.call("config_get")["ike"]["proposals"] == "legacy-windows"
    screenshot(page, "5-settings")

    # The wizard is closed now; the CA offered is the daemon's.
    assert page.goto(lab.url + "/setup").status == 404
    assert download_ca(page) == lab.box.ca_pem()
    for secret in (ADMIN_PASSWORD, ALICE_PW, BOB_PW):
        assert secret not in page.content()


def test_session_on_the_page_and_disconnect_from_it(page, lab):
    wizard(page, lab)
    charon = lab.client(download_ca(page))  # the CA exactly as the page offers it
    # The status page is open before the client connects; a marker in the window
    # proves the session arrives by the page's own refresh, not by a reload.
    assert "No client is connected" in page.inner_text("#live")
    page.evaluate("window.ikbxwMarker = 'still-here'")
    charon.load(_conn(lab, "alice", ALICE_PW))
    charon.initiate()
    assert charon.ike_state() == "ESTABLISHED", lab.explain()

    row = page.wait_for_selector("tr[data-user=alice]", timeout=15000)
    assert page.evaluate("window.ikbxwMarker") == "still-here"
    text = row.inner_text()
    session = lab.box.call("show_sessions")[0]
    assert lab.client_ip in text and session["assigned"][0] in text, text
    assert session["assigned"][0].startswith("10.123.0.")
    assert page.get_attribute("[data-led=tunnel]", "data-state") == "on"
    screenshot(page, "3-status")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    screenshot(page, "3-status-phone")
    page.set_viewport_size({"width": 1100, "height": 800})

    page.locator("tr[data-user=alice] button:has-text('Disconnect')").click()
    page.wait_for_selector("text=Disconnected alice")
    deadline = time.time() + 15
    while charon.ike_state() and time.time() < deadline:
        time.sleep(0.2)
    assert charon.ike_state() is None, lab.explain()
    assert lab.box.call("show_sessions") == []
    page.wait_for_selector("text=No client is connected")


def test_wrong_password_shows_under_recent_failures(page, lab):
    wizard(page, lab)
    charon = lab.client(lab.box.ca_pem())
    charon.load(_conn(lab, "alice", "not-the-password"))
    charon.initiate()
    assert charon.ike_state() is None, lab.explain()
    deadline = time.time() + 20
    while not lab.box.call("failures") and time.time() < deadline:
        time.sleep(0.5)
    failure = lab.box.call("failures")[0]
    page.click("nav >> text=Failures")
    row = page.locator("table.failures tbody tr").first
    cells = row.locator("td").all_inner_texts()
    assert cells[1].startswith(lab.client_ip), cells
    assert cells[2] == "alice" and cells[3] == failure["step"], cells
    assert cells[4] == failure["reason"] and re.search(r"\w+ \w+", cells[4]), cells
    assert page.get_attribute("table.failures tbody tr", "data-class") == "auth"
    screenshot(page, "6-failures")
    assert "not-the-password" not in page.content()


def _conn(lab: Lab, user: str, password: str):  # noqa: ANN202
    from tests.harness.strongswan import Conn
    return Conn(remote_addr=lab.box_ip, remote_id=IDENTITY, local_id=user,
                password=password, remote_ts=f"{lab.lan_ip}/32")
