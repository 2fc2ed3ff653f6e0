"""The chat page in real Chromium: streaming, Stop, errors, models, reloads, keys, and no HTML injection."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from app.http.auth import GatewayKey
from tests.browser.conftest import Start
from tests.fake_vendor import FakeVendor


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def last_answer(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".message.assistant").last


def test_an_answer_streams_token_by_token(page: Page, gateway: Start) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "slow-echo")
    ask(page, "one two three four five six")
    expect(page.locator("#send")).to_have_text("Stop")
    expect(page.locator("#status")).to_have_text("Streaming…")
    partial = last_answer(page).locator(".body")
    expect(partial).to_contain_text("one")
    assert "six" not in partial.inner_text()  # seen before the answer was complete
    expect(partial).to_have_text("one two three four five six")
    expect(last_answer(page).locator(".meta")).to_contain_text("echo:delay_ms=150 · TTFT")  # the model that answered
    expect(last_answer(page).locator(".meta")).to_contain_text("tok/s")
    expect(page.locator("#status")).to_have_text("Idle")
    expect(page.locator("#send")).to_have_text("Send")


def test_stop_aborts_and_the_gateway_cancels_the_upstream(
    page: Page, gateway: Start, vendor: FakeVendor, endless_model: str
) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "endless")
    ask(page, "go on forever")
    expect(last_answer(page).locator(".body")).to_contain_text("tok tok tok")
    page.click("#send")  # now Stop
    stopped = time.monotonic()
    expect(page.locator("#status")).to_have_text("Stopped")
    expect(page.locator("#send")).to_have_text("Send")
    expect(last_answer(page).locator(".meta")).to_have_text("Stopped")
    assert vendor.closed_at(endless_model) - stopped < 2  # the vendor saw its connection closed


def test_an_error_shows_in_the_chat_and_in_the_status_bar(page: Page, gateway: Start) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "broken")
    ask(page, "hello")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "error")
    expect(status).to_contain_text("Error: ")
    in_chat = page.locator(".message.error .meta")
    expect(in_chat).to_contain_text("fake failure 500")
    assert status.inner_text().removeprefix("Error: ") in in_chat.inner_text()


def test_switching_models_and_the_choice_survives_a_reload(page: Page, gateway: Start) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "slow-echo")
    ask(page, "first")
    expect(last_answer(page).locator(".meta")).to_contain_text("echo:delay_ms=150")  # the alias slow-echo answered
    page.select_option("#model", "echo")
    ask(page, "second")
    expect(page.locator(".message.assistant").nth(1).locator(".meta")).to_contain_text("echo · TTFT")
    page.reload()
    expect(page.locator("#model")).to_have_value("echo")


def test_a_reload_keeps_the_conversation_and_new_starts_another(page: Page, gateway: Start) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "echo")
    ask(page, "remember this")
    expect(last_answer(page).locator(".meta")).to_contain_text("TTFT")
    page.reload()
    expect(page.locator(".message.user")).to_have_text(["remember this"])
    expect(page.locator(".message.assistant .body")).to_have_text(["remember this"])
    expect(page.locator("#conversations button")).to_have_text(["remember this"])
    page.click("#new")
    expect(page.locator(".message")).to_have_count(0)
    ask(page, "another one")
    expect(page.locator("#conversations button")).to_have_count(2)
    page.locator("#conversations button", has_text="remember this").click()
    expect(page.locator(".message.user")).to_have_text(["remember this"])


def test_with_gateway_keys_the_page_asks_for_one_and_keeps_it_in_the_tab(page: Page, gateway: Start) -> None:
    page.goto(gateway(keys=[GatewayKey("browser", "page-key-123")]).url)
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key", "page-key-123")
    page.click("#save-key")
    expect(page.locator("#model option", has_text="echo").first).to_be_attached()
    page.select_option("#model", "echo")
    ask(page, "with a key")
    expect(last_answer(page).locator(".body")).to_have_text("with a key")
    assert page.evaluate("sessionStorage.getItem('gateway.key')") == "page-key-123"
    assert page.evaluate("localStorage.getItem('gateway.key')") is None


def test_model_text_is_shown_as_text_never_run_as_html(page: Page, gateway: Start) -> None:
    page.goto(gateway().url)
    page.select_option("#model", "echo")
    hostile = "<img src=x onerror=window.pwned=1><b>bold</b>"
    ask(page, hostile)
    expect(last_answer(page).locator(".body")).to_have_text(hostile)
    assert page.locator("#messages img, #messages b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_without_a_conversation_store_the_browser_keeps_the_conversation(page: Page, gateway: Start) -> None:
    page.goto(gateway(database_url="postgresql://nobody@127.0.0.1:1/none").url)  # the store is down
    page.select_option("#model", "echo")
    ask(page, "kept in this browser")
    expect(last_answer(page).locator(".meta")).to_contain_text("TTFT")
    expect(page.locator("#status")).to_have_text("Idle")  # the missing store is no error for the chat
    page.reload()
    expect(page.locator(".message.user")).to_have_text(["kept in this browser"])
    expect(page.locator(".message.assistant .body")).to_have_text(["kept in this browser"])
    assert page.locator("#conversations li").count() == 0
    page.click("#new")
    expect(page.locator(".message")).to_have_count(0)
