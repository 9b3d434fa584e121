"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium driven by Playwright.

Asks a question in the chat, waits for the answer and its page citation,
opens the image of the cited page and saves a screenshot to test-artifacts/.
Also records the cold start (fresh server process, existing index → first
answer on screen) in test-artifacts/cold-start.json.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag.config import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "デジタル実装に取り組む地方公共団体の2027年度までの目標は？"
SERVER_START_TIMEOUT_S = 60
UI_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium); apt-get install chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_idle(page) -> None:
    """Wait until Streamlit has finished the current run (its "running" indicator is gone)."""
    page.wait_for_timeout(300)  # a run that was just triggered shows the indicator only after a moment
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=UI_TIMEOUT_MS
    )


def _switch_on(page, switch, attempts: int = 3) -> None:
    """Turn a Streamlit toggle on, as a person would: click, look, click again if it is still off.

    Once, on a loaded CI machine, a click on the toggle right after the answer's
    run left it off (aria snapshot: unchecked switch, no image). The image
    assertion after this still has to pass, so a toggle that never turns on fails.
    """
    from playwright.sync_api import expect

    for attempt in range(1, attempts + 1):
        _wait_until_idle(page)
        # The input itself is visually hidden behind BaseWeb's track; a person clicks its label.
        switch.locator("xpath=ancestor::label[1]").click()
        try:
            expect(switch).to_be_checked(timeout=10_000)
            return
        except AssertionError:
            print(f"toggle still off after click {attempt}; clicking again")
    expect(switch).to_be_checked()


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit did not become healthy in {SERVER_START_TIMEOUT_S}s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def server(default_settings, tmp_path):
    """A fresh `streamlit run app.py` on the session's prebuilt index; always terminated."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RAG_LLM"))}
    env.update(
        RAG_INDEX_DIR=str(default_settings.index_dir),
        RAG_CORPUS_DIR=str(default_settings.corpus_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    log = tmp_path / "streamlit.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"),
                "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                "--browser.gatherUsageStats", "false",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole group can be stopped
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield {"url": f"http://127.0.0.1:{port}/", "started": started, "healthy": time.monotonic(), "log": log}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_chat_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1100}, locale="ja-JP")
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(server["url"], wait_until="domcontentloaded")

            chat_input = page.get_by_test_id("stChatInputTextArea")
            expect(chat_input).to_be_visible(timeout=UI_TIMEOUT_MS)
            ready = time.monotonic()
            expect(page.get_by_text("質問の例")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "chat-empty.png"))
            chat_input.fill(QUESTION)
            chat_input.press("Enter")

            # The answer, then its citation with a page number.
            assistant = page.get_by_test_id("stChatMessage").nth(1)
            expect(assistant).to_contain_text("1,500団体", timeout=UI_TIMEOUT_MS)
            answered = time.monotonic()
            citation = assistant.get_by_test_id("stExpander").first
            expect(citation).to_contain_text("p.2")
            _wait_until_idle(page)  # the run has finished: no stale (greyed) elements in the picture
            page.screenshot(path=str(ARTIFACTS / "chat-answer.png"))

            # Open the citation, then the image of the cited page.
            _wait_until_idle(page)
            citation.locator("summary").click()
            expect(citation.locator("mark").first).to_be_visible()
            _switch_on(page, citation.get_by_role("switch", name="ページの画像を表示"))
            image = citation.locator("[data-testid='stImage'] img, img[src*='/media/']").first
            expect(image).to_be_visible(timeout=UI_TIMEOUT_MS)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            expect(citation.get_by_text("PDFをダウンロード")).to_be_visible()

            _wait_until_idle(page)
            image.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let the last layout settle before the picture is taken
            page.screenshot(path=str(ARTIFACTS / "chat.png"))
        except Exception:
            # What the server said is the first thing to read when the browser side fails.
            page.screenshot(path=str(ARTIFACTS / "chat-failure.png"))
            print("streamlit log (tail):\n" + server["log"].read_text(errors="replace")[-4000:])
            raise
        finally:
            browser.close()

    timings = {
        "server_start_to_healthy_s": round(server["healthy"] - server["started"], 2),
        "server_start_to_chat_ready_s": round(ready - server["started"], 2),
        "question_to_answer_on_screen_s": round(answered - ready, 2),
        "cold_start_to_first_answer_s": round(answered - server["started"], 2),
    }
    (ARTIFACTS / "cold-start.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")
    print("cold start:", timings)
    assert (ARTIFACTS / "chat.png").stat().st_size > 10_000
