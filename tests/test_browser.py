"""The chat page in headless Chromium: load it, ask for a smile, wait for the face, take a screenshot.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Without it the test is skipped, unless
``CHATEDIT_REQUIRE_BROWSER=1`` (set by CI), where a missing browser is a failure. The screenshot
goes to ``$CHATEDIT_ARTIFACTS`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from test_ui import free_port  # noqa: E402

CHROMIUM = os.environ.get("CHATEDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("CHATEDIT_REQUIRE_BROWSER") == "1"


def artifacts() -> Path:
    path = Path(os.environ.get("CHATEDIT_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("CHATEDIT_REQUIRE_BROWSER=1 but no chromium was found (apt-get install chromium)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.mark.slow
def test_the_page_edits_a_face_when_asked_and_keeps_it_on_reload(browser, tmp_path):
    from chatedit.state import DialogState
    from chatedit.ui.server import ServeOptions, serve

    port = free_port()
    page_app, app = serve(ServeOptions(data_dir=tmp_path, port=port), block=False)
    try:
        # a session on a face whose smile can grow (this tests the page, not the walk), opened by its link
        editor = app.sessions.agent.editor

        def smile_can_grow(seed: int) -> bool:
            state = DialogState()
            editor.new_face(state, seed)
            return state.current.degrees["smiling"] <= 2 and editor.edit(state, "smiling", change=1).changed

        seed = next(s for s in range(1000) if smile_can_grow(s))
        session = app.sessions.ensure(None)
        list(app.send({"text": f"new face, seed {seed}"}, session))
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/?session={session}")
        chat = page.locator("#chat")
        chat.locator("img").first.wait_for(timeout=60_000)  # the starting face, in the conversation
        faces = chat.locator("img").count()

        box = page.locator("#message textarea")
        box.fill("make the person smile")
        box.press("Enter")
        page.wait_for_function(f"document.querySelectorAll('#chat img').length > {faces}", timeout=60_000)
        page.wait_for_timeout(500)  # let the reply and the side panel settle
        assert "make the person smile" in chat.inner_text()
        assert page.locator("#preview img").count() == 1
        assert app.sessions.agent.session(session).state.current.degrees["smiling"] > 1
        page.screenshot(path=str(artifacts() / "chat_page.png"), full_page=True)

        text = chat.inner_text()
        page.goto(f"http://127.0.0.1:{port}/")  # no link now: the browser remembers its session
        page.wait_for_function(f"document.querySelectorAll('#chat img').length > {faces}", timeout=60_000)
        assert "make the person smile" in chat.inner_text()
        assert chat.inner_text().strip() == text.strip()
    finally:
        page_app.close()
