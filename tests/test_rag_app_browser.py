"""End to end: the Gradio RAG app in a real headless Chromium.

Starts notebook 05's app (its cell, run by tests/notebook_cells.py) on 127.0.0.1 over
a real Chroma store and the local llama.cpp server, opens it with Debian's chromium + chromedriver through selenium, asks a
question from the question set, and waits for an answer that lists its source.
The browser is the system one (apt-get install chromium chromium-driver); selenium
is never allowed to download a browser or a driver.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from notebook_cells import cell_namespace
from needs import need_module

CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("COURSE_CHROMEDRIVER", "/usr/bin/chromedriver")

pytestmark = pytest.mark.slow


def _require(path: str, what: str) -> None:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        message = f"{what} not found at {path}: apt-get install -y chromium chromium-driver (make test does this)"
        if os.environ.get("CI"):  # CI installs the browser through `make test`: missing is a failure there
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser():
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile_dir = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile_dir}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


@pytest.fixture
def rag_app_url(tmp_path):
    need_module("llama_cpp", "the local llama.cpp server (llama-cpp-python[server]) is not installed")
    from course_utils.chat import apps
    from course_utils.retrieval import knowledge_base, rag
    from course_utils.chat.llm import get_backend

    chunking = knowledge_base.CHUNKINGS[0]
    store, _ = knowledge_base.build_knowledge_base(chunking, persist_dir=tmp_path / "chroma")
    backend = get_backend("local")
    chain = rag.RagChain(store, rag.chat_model_from_backend(backend, max_tokens=60), k=3)
    # notebook 05's app, from its cell
    app = cell_namespace("05_rag.ipynb", "gr.ChatInterface(", chain=chain, asked=rag.load_questions())["app"]
    url = apps.launch(app)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url
    finally:
        apps.close(app)


def test_rag_app_answers_with_a_source_in_a_real_browser(browser, rag_app_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from course_utils.retrieval import rag

    question = next(q for q in rag.load_questions() if q["source"] == "policy-shipping.md")
    browser.get(rag_app_url)
    box = WebDriverWait(browser, 60).until(ec.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
    box.send_keys(question["question"])
    box.send_keys(Keys.ENTER)

    def answered(driver):
        bots = driver.find_elements(By.CSS_SELECTOR, '[data-testid="bot"]')
        texts = [bot.text for bot in bots]
        return next((t for t in texts if "Sources:" in t), False)

    reply = WebDriverWait(browser, 180, poll_frequency=0.5).until(answered)
    answer, _, sources = reply.partition("Sources:")
    assert answer.strip(), reply
    assert question["source"] in sources, reply
