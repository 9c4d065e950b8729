"""The web chat page at `/`, in a real headless browser: Debian's Chromium driven by
Playwright, against a real `chatbot serve` on a tiny model (its replies are arbitrary
words: the tests check structure, not content).

One browser and one server (with an API key) for the module; each test gets a fresh
browser context (its own localStorage, the key in it but for the key's own test) and
checks that every request its page made stayed on the server's origin. Skipped, with the
reason, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("no Chromium to drive (Debian: apt-get install chromium; .ci/run does it)",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")

from chatbot.transcripts.store import TranscriptStore  # noqa: E402
from tests.serve_util import Served  # noqa: E402
from tests.tiny_model import tiny_model_dir  # noqa: E402

STATIC = Path(__file__).resolve().parent.parent / "chatbot" / "serve" / "static"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXTS = ["hello there", "how are you", "fine thanks and you", "what is your name",
         "my name is bot", "good to meet you", "where do you live", "in the city"]
API_KEY = "page-test-key"
REPLY_TIMEOUT_MS = 30_000

sync_api.expect.set_options(timeout=REPLY_TIMEOUT_MS)

BOT = "#log li.msg.bot"
USER = "#log li.msg.user"


# ---- the server and the browser --------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Served]:
    """`chatbot serve` with an API key, on a tiny model; not waited for here: the browser
    starts while the model loads."""
    home = tmp_path_factory.mktemp("serve-page")
    transcripts = home / "transcripts.db"
    with Served(tiny_model_dir(TEXTS, seed=7, eos_boost=1.5), transcripts,
                "--api-key", API_KEY, "--decode", "greedy", ready=False,
                env={"CHATBOT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}) as served:
        served.transcripts = transcripts
        yield served


@pytest.fixture(scope="module")
def browser(server) -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=BROWSER_ARGS)
        server.wait_ready()
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser, server) -> Iterator[sync_api.BrowserContext]:
    """A fresh context (its own localStorage) holding the server's API key, as a page the
    user gave the key once; every request it makes must stay on the server's origin:
    nothing from a CDN, nothing the browser fetches for itself."""
    yield from watched_context(browser, server, API_KEY)


@pytest.fixture
def keyless_context(browser, server) -> Iterator[sync_api.BrowserContext]:
    yield from watched_context(browser, server, None)


def watched_context(browser, server, key: str | None) -> Iterator[sync_api.BrowserContext]:
    fresh = browser.new_context(viewport={"width": 800, "height": 700})
    fresh.set_default_timeout(REPLY_TIMEOUT_MS)
    if key:
        # (Every document: about:blank too, where localStorage is out of bounds.)
        fresh.add_init_script("if (location.protocol === 'http:') "
                              f"localStorage.setItem('chatbot.apiKey', {json.dumps(key)})")
    requests: list[str] = []
    errors: list[str] = []
    fresh.on("request", lambda request: requests.append(request.url))
    fresh.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
    yield fresh
    fresh.close()
    origin = urlsplit(server.url)
    away = [url for url in requests
            if urlsplit(url)[:2] != origin[:2] and not url.startswith("data:")]
    assert not away, f"requests that left {server.url}: {away}"
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(context, server) -> sync_api.Page:
    opened = context.new_page()
    opened.goto(server.url)
    return opened


# ---- helpers ------------------------------------------------------------------------------

def say(page, text: str) -> str:
    """Type `text` and press Enter; wait for its reply and return the reply's text."""
    replies = page.locator(BOT).count()
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")
    page.locator(BOT).nth(replies).wait_for()
    return page.locator(f"{BOT} .bubble").nth(replies).inner_text()


def conversation_id(page) -> int:
    return int(page.evaluate("localStorage.getItem('chatbot.conversation')"))


def stored(server: Served) -> TranscriptStore:
    return TranscriptStore(server.transcripts, create=False)


# ---- the tests ----------------------------------------------------------------------------

def test_enter_sends_and_both_turns_are_stored_as_a_web_conversation(page, server):
    expect = sync_api.expect
    expect(page.locator("#empty")).to_be_visible()
    page.locator("#input").press_sequentially("hello there")
    page.locator("#input").press("Enter")
    expect(page.locator(f"{USER} .bubble")).to_have_text(["hello there"])
    page.locator(BOT).first.wait_for()
    expect(page.locator("#input")).to_have_value("")
    expect(page.locator("#empty")).to_be_hidden()
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#thinking")).to_be_hidden()
    reply = page.locator(f"{BOT} .bubble").first.inner_text()
    expect(page.locator("#announce")).to_have_text(f"Bot: {reply}")  # read out (aria-live)

    cid = conversation_id(page)
    with stored(server) as store:
        turns = store.turns(cid)
        assert [(t["role"], t["text"]) for t in turns] == [("user", "hello there"),
                                                            ("bot", reply)]
        assert store.conversation(cid)["origin"] == "web"
    # The page knows which stored turn each bubble is (rating needs the reply's id).
    ids = page.locator("#log li.msg").evaluate_all("items => items.map(i => +i.dataset.turnId)")
    assert ids == [t["id"] for t in turns]


def test_shift_enter_adds_a_line_and_enter_sends_both(page, server):
    box = page.locator("#input")
    box.press_sequentially("how are")
    box.press("Shift+Enter")
    box.press_sequentially("you")
    sync_api.expect(box).to_have_value("how are\nyou")
    assert page.locator("#log li.msg").count() == 0
    box.press("Enter")
    page.locator(BOT).first.wait_for()
    sync_api.expect(page.locator(f"{USER} .bubble")).to_have_text(["how are\nyou"])
    with stored(server) as store:
        assert store.turns(conversation_id(page))[0]["text"] == "how are\nyou"


def test_send_is_disabled_and_thinking_shown_while_waiting(page):
    held = []
    page.route("**/api/conversations/*/messages", lambda route: held.append(route))
    page.locator("#input").fill("hello")
    page.locator("#input").press("Enter")
    sync_api.expect(page.locator("#thinking")).to_be_visible()
    sync_api.expect(page.locator("#send")).to_be_disabled()
    page.locator("#input").press("Enter")  # a second Enter while waiting sends nothing
    assert len(held) == 1
    held[0].continue_()
    page.locator(BOT).first.wait_for()
    sync_api.expect(page.locator("#thinking")).to_be_hidden()
    sync_api.expect(page.locator("#send")).to_be_enabled()
    assert page.locator(USER).count() == 1


def test_rating_a_reply_is_stored(page, server):
    say(page, "hello there")
    say(page, "how are you")
    first = page.locator(BOT).first
    first.get_by_role("button", name="Good reply").click()
    sync_api.expect(first.get_by_role("button", name="Good reply")).to_have_attribute(
        "aria-pressed", "true")
    sync_api.expect(first.get_by_role("button", name="Bad reply")).to_have_attribute(
        "aria-pressed", "false")
    turn_id = int(first.get_attribute("data-turn-id"))
    with stored(server) as store:
        ratings = {t["id"]: t["rating"] for t in store.turns(conversation_id(page))}
    assert ratings[turn_id] == "good"
    assert [r for i, r in ratings.items() if i != turn_id] == [None, None, None]

    first.get_by_role("button", name="Bad reply").click()
    sync_api.expect(first.get_by_role("button", name="Bad reply")).to_have_attribute(
        "aria-pressed", "true")
    with stored(server) as store:
        assert store.turns(conversation_id(page))[1]["rating"] == "bad"


def test_reset_starts_an_empty_conversation_and_the_next_message_goes_to_it(page, server):
    say(page, "hello there")
    before = conversation_id(page)
    page.get_by_role("button", name="New conversation").click()
    sync_api.expect(page.locator("#log li.msg")).to_have_count(0)
    sync_api.expect(page.locator("#empty")).to_be_visible()
    page.wait_for_function(f"localStorage.getItem('chatbot.conversation') !== '{before}'")
    after = conversation_id(page)
    assert after != before
    say(page, "fine thanks")
    assert conversation_id(page) == after
    with stored(server) as store:
        assert [t["text"] for t in store.turns(after)][:1] == ["fine thanks"]
        assert len(store.turns(before)) == 2  # the old one is kept, untouched


def test_a_reload_keeps_the_conversation(page, server):
    say(page, "hello there")
    say(page, "how are you")
    shown = page.locator("#log li.msg .bubble").all_inner_texts()
    cid = conversation_id(page)
    page.reload()
    sync_api.expect(page.locator("#log li.msg .bubble")).to_have_text(shown)
    assert conversation_id(page) == cid
    say(page, "fine thanks")  # and goes on in it
    with stored(server) as store:
        assert len(store.turns(cid)) == 6


def test_a_conversation_the_server_no_longer_has_is_replaced(context, server):
    page = context.new_page()
    page.add_init_script("if (location.protocol === 'http:') "
                         "localStorage.setItem('chatbot.conversation', '987654')")
    page.goto(server.url)
    sync_api.expect(page.locator("#empty")).to_be_visible()
    page.wait_for_function("localStorage.getItem('chatbot.conversation') === null")
    sync_api.expect(page.locator("#status")).to_have_text("")
    say(page, "hello there")
    first = conversation_id(page)
    assert first != 987654

    # Deleted while the page shows it: the next message goes on in a new conversation.
    gone = page.request.delete(f"{server.url}api/conversations/{first}",
                               headers={"Authorization": f"Bearer {API_KEY}"})
    assert gone.status == 204
    page.locator("#input").fill("how are you")
    page.locator("#input").press("Enter")
    sync_api.expect(page.locator("#log li.msg")).to_have_count(2)  # the old turns went
    sync_api.expect(page.locator(f"{USER} .bubble")).to_have_text(["how are you"])
    sync_api.expect(page.locator("#status")).to_contain_text("new one")
    with stored(server) as store:  # (SQLite may give the new one the deleted one's id)
        assert [t["text"] for t in store.turns(conversation_id(page))][:1] == ["how are you"]


def test_a_phone_screen_has_no_horizontal_scroll(context, server):
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 667})
    page.goto(server.url)
    say(page, "a long unbroken word: " + "x" * 120)
    say(page, "hello there " * 12)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 375, width
    # Nothing is cut off at the edge either: every bubble and its buttons fit.
    right = page.locator("#log li.msg, #log .bubble, #log .meta").evaluate_all(
        "items => Math.max(...items.map(i => i.getBoundingClientRect().right))")
    assert right <= 375, right
    for control in ("#send", "#reset", "#input"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (control, box)
        assert box["y"] + box["height"] <= 667, (control, box)


def test_server_errors_show_in_the_status_line(page):
    message = "text is too long: at most 2000 characters"
    page.route("**/api/conversations/*/messages", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": "text", "code": "text_too_long"}})))
    page.locator("#input").fill("hello")
    page.locator("#input").press("Enter")
    status = page.locator("#status")
    sync_api.expect(status).to_have_text(message)
    sync_api.expect(status).to_have_class(re.compile(r"\berror\b"))
    sync_api.expect(status).to_have_attribute("role", "status")
    # Nothing was sent: the text is back in the box to try again.
    sync_api.expect(page.locator("#log li.msg")).to_have_count(0)
    sync_api.expect(page.locator("#input")).to_have_value("hello")
    sync_api.expect(page.locator("#send")).to_be_enabled()


def test_a_loading_model_is_waited_for(page):
    answered = []

    def loading_once(route):
        if answered:
            route.continue_()
            return
        answered.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", headers={"Retry-After": "1"},
                      body=json.dumps({"error": {"message": "the model is loading",
                                                 "type": "server_error", "param": None,
                                                 "code": "model_loading"}}))

    page.route("**/api/conversations/*/messages", loading_once)
    page.locator("#input").fill("hello")
    page.locator("#input").press("Enter")
    sync_api.expect(page.locator("#status")).to_contain_text("still loading")
    page.locator(BOT).first.wait_for()
    sync_api.expect(page.locator("#status")).to_have_text("")
    assert answered and page.locator(USER).count() == 1


def test_the_page_asks_for_the_api_key_and_keeps_it(keyless_context, server):
    """The server wants a key: the page asks for it on the first 401, says so when the
    server refuses one, keeps the key in localStorage and sends it as a bearer token."""
    sent: list[str | None] = []
    keyless_context.on("request", lambda request: sent.append(
        request.headers.get("authorization")) if "/api/" in request.url else None)
    page = keyless_context.new_page()
    page.goto(server.url)
    page.locator("#input").fill("hello there")
    page.locator("#input").press("Enter")
    key = page.get_by_label("API key")
    sync_api.expect(key).to_be_visible()
    sync_api.expect(key).to_be_focused()
    sync_api.expect(page.locator("#status")).to_contain_text("needs an API key")
    key.fill("wrong")
    key.press("Enter")
    sync_api.expect(page.locator("#status")).to_contain_text("refused")
    key.fill(API_KEY)
    key.press("Enter")
    page.locator(BOT).first.wait_for()
    sync_api.expect(page.locator("#key-form")).to_be_hidden()
    sync_api.expect(page.locator(f"{USER} .bubble")).to_have_text(["hello there"])
    assert page.evaluate("localStorage.getItem('chatbot.apiKey')") == API_KEY
    assert sent[:3] == [None, "Bearer wrong", f"Bearer {API_KEY}"]

    # A reload asks no more: the kept key goes with every request.
    count = len(sent)
    page.reload()
    sync_api.expect(page.locator(f"{USER} .bubble")).to_have_text(["hello there"])
    say(page, "how are you")
    assert sent[count:] and set(sent[count:]) == {f"Bearer {API_KEY}"}
    sync_api.expect(page.locator("#key-form")).to_be_hidden()


def test_the_page_is_served_whole_by_the_server(context, server):
    """The HTML, CSS and script come from the server (nothing from a CDN: it works
    offline); the files name no other site."""
    fetched: list[str] = []
    context.on("response", lambda response: fetched.append(
        f"{response.status} {urlsplit(response.url).path}"))
    page = context.new_page()
    page.goto(server.url)
    sync_api.expect(page.locator("#input")).to_be_focused()
    assert {"200 /", "200 /static/chat.css", "200 /static/chat.js"} <= set(fetched)
    for name in ("index.html", "chat.css", "chat.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?:|//[\w-]+\.[\w.-]+|@import|url\(", text), name
    # Accessible: the message box has a label; the status line and replies are announced.
    assert page.get_by_label("Message").count() == 1
    assert page.locator("#status[aria-live=polite], #announce[aria-live=polite]").count() == 2
