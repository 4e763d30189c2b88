"""The whole loop in a real browser: Debian's chromium driven by Playwright against `chainlit run`.

Log in -> describe a use case -> recommendation -> upload a small dataset -> launch a tiny-model run (the worker
the chat autostarts runs it) -> see it finish with its evaluation -> ask a follow-up question -> A/B vote -> open a
cited passage beside the chat. A shorter test checks the side panel on its own: closed until a citation is clicked,
the chat visible next to it, and not reopened or replaced by the passages later messages bring.
Screenshots of the main screens go to the test's temporary folder, or to docs/ (linked from the README) with
`TUNEWISE_E2E_SHOTS=docs`, so an ordinary test run leaves the tracked files alone. Needs /usr/bin/chromium
(`make test` installs it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from executor.train.distributed import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "e2e", "e2e-password-1"
USE_CASE = ("We want a model that writes replies to customers' order emails in our house style. We have 3,000 "
            "past emails with the replies our agents sent and no GPU.")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")]


@pytest.fixture
def tiny_model(tmp_path, smol_tokenizer) -> Path:
    from executor.models.loader import tiny_llama

    folder = tmp_path / "tiny-model"
    tiny_llama(smol_tokenizer).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def dataset(tmp_path) -> Path:
    rows = [{"question": f"Where is my order {1000 + i}?", "answer": f"Order {1000 + i} ships on day {i % 5 + 1}."}
            for i in range(40)]
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def server(tmp_path, tiny_model):
    """`chainlit run` as `make chat` starts it, on a free port, with its own data directory and one account; the
    tiny model's folder is one an admin lists (TUNEWISE_MODEL_DIRS), so the chat may train it."""
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "TUNEWISE_HOME": str(home), "TUNEWISE_USERS": f"{USER}:{PASSWORD}",
           "TUNEWISE_MODEL_DIRS": str(tiny_model),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(OPENAI_API_KEY="", ANTHROPIC_API_KEY="")  # "" (not absent): Chainlit's .env loading cannot set them
    log = (tmp_path / "chainlit.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "chainlit", "run", "assistant/chat/app.py", "--host",
                                "127.0.0.1", "--port", str(port), "--headless"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert process.poll() is None and time.time() < deadline, (tmp_path / "chainlit.log").read_text()[-3000:]
            time.sleep(0.3)
    yield url, home
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # uvicorn waits for open websockets; the test is over
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()
    from executor.runs.autostart import worker_pid

    pid = worker_pid(home / "runs.sqlite")  # the worker the chat started for this data directory
    if pid:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def scroll_to(locator, block: str = "start") -> None:
    """Scroll a message into view for a screenshot (React may re-render it meanwhile: try again)."""
    for _ in range(5):
        try:
            locator.evaluate(f"e => e.scrollIntoView({{block: '{block}'}})", timeout=5_000)
            return
        except Exception:  # noqa: BLE001 - detached while re-rendering
            time.sleep(0.5)


def shot(page, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let the last message finish rendering
    page.screenshot(path=str(folder / name))


def launch_browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"])


def log_in(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.fill("#email", USER)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Describe your use case and I will recommend")).to_be_visible()


def test_a_cited_passage_opens_beside_the_chat_only_when_clicked(server):
    """#18: a cited source replaced the chat page (Back needed two presses); with Chainlit's side display the panel
    opened by itself on every message and stacked every passage. Now: closed until a citation is clicked, then that
    passage beside the conversation; passages that later messages bring neither open it nor replace what is read."""
    from playwright.sync_api import expect, sync_playwright

    url, _ = server
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=90_000)
        panel, side = page.locator("#side-view-title"), page.locator("#side-view-content")
        try:
            log_in(page, url)
            page.fill("#chat-input", USE_CASE)
            page.click("#chat-submit")
            expect(page.get_by_text("Sources (click to read)")).to_be_visible()
            page.wait_for_timeout(1_500)
            expect(panel).to_have_count(0)  # the card's passages did not open the panel

            page.locator("a.element-link", has_text="lora#when-to-use-it").first.click()
            expect(side.get_by_text("LoRA — When to use it")).to_be_visible()
            expect(side.get_by_text("cited by a rule")).to_be_visible()
            expect(side.locator(":scope > *")).to_have_count(1)  # that passage alone, not every one stacked
            expect(page.get_by_text("What I understood")).to_be_visible()  # the chat, beside it
            expect(page.get_by_text("Sources (click to read)")).to_be_visible()
            assert "/element/" not in page.url

            # A question whose answer cites a passage: the panel keeps the passage being read.
            page.fill("#chat-input", "what does QLoRA mean?")
            page.click("#chat-submit")
            expect(page.get_by_text("In your plan:")).to_be_visible()
            page.wait_for_timeout(1_500)
            expect(side.get_by_text("LoRA — When to use it")).to_be_visible()
            expect(panel).to_contain_text("lora#when-to-use-it")

            # Closed by its button, it stays closed when the next passage arrives; that passage opens on a click.
            panel.locator("button").first.click()
            expect(panel).to_have_count(0)
            page.fill("#chat-input", "explain RAG to me")
            page.click("#chat-submit")
            expect(page.get_by_text("spectrum#retrieval-augmented-generation").first).to_be_visible()
            page.wait_for_timeout(1_500)
            expect(panel).to_have_count(0)
            page.locator("a.element-link", has_text="qlora#what-it-is").last.click()
            expect(panel).to_contain_text("qlora#what-it-is")
            expect(side).to_contain_text("QLoRA")
            expect(page.get_by_text("explain RAG to me")).to_be_visible()
        finally:
            browser.close()


def test_the_whole_loop_in_a_browser(server, tiny_model, dataset, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, home = server
    shots = ROOT / os.environ["TUNEWISE_E2E_SHOTS"] if os.environ.get("TUNEWISE_E2E_SHOTS") else tmp_path / "shots"
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        # Everything the page loads comes from the chat server (#17: no fonts or stylesheets from public CDNs).
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
        page.set_default_timeout(60_000)
        expect.set_options(timeout=90_000)  # the first turn waits for the advisor (retrieval index) to load
        try:
            # Log in.
            page.goto(url)
            # The login page in Tunewise's words (#18): a user name, not an e-mail address.
            expect(page.get_by_text("Log in to Tunewise")).to_be_visible()
            expect(page.get_by_text("User name")).to_be_visible()
            # Tunewise's logo and icon (public/), not Chainlit's, on the login page and in the header.
            for path in ("/logo?theme=light", "/logo?theme=dark", "/favicon"):
                with urllib.request.urlopen(url + path, timeout=10) as served:
                    assert b"<title>Tunewise</title>" in served.read(), path
            expect(page.locator("img[src*='/logo']").first).to_be_visible()
            page.fill("#email", USER)
            page.fill("#password", "not-the-password")
            page.get_by_role("button", name="Sign In").click()
            expect(page.get_by_text("Wrong user name or password", exact=False)).to_be_visible()
            page.fill("#email", USER)
            page.fill("#password", PASSWORD)
            page.get_by_role("button", name="Sign In").click()
            expect(page.get_by_text("Describe your use case and I will recommend")).to_be_visible()

            def say(text: str) -> None:
                page.fill("#chat-input", text)
                page.click("#chat-submit")

            # Describe the use case: clear enough that the card comes at once (the confidence is above the
            # threshold, so no question is asked first).
            say(USE_CASE)
            expect(page.get_by_text("What I understood")).to_be_visible()
            expect(page.get_by_text("Fine-tuning with LoRA").first).to_be_visible()
            expect(page.get_by_text("Sources (click to read)")).to_be_visible()
            scroll_to(page.get_by_role("heading", name="Fine-tuning with LoRA").last)
            shot(page, shots, "chat-recommendation.png")

            # A follow-up question about the advice (#18): answered from the decision's trace, no fact changed.
            say("Why not just use few-shot prompting?")
            expect(page.get_by_text("What would make Prompting win:")).to_be_visible()
            expect(page.get_by_text("Your question changed no fact.")).to_be_visible()
            shot(page, shots, "chat-followup.png")

            # A tiny model stands in for SmolLM2 so the run takes seconds; 4 steps, 4 test rows evaluated.
            say(f"set base_model={tiny_model} max_steps=4 eval_limit=4")
            expect(page.get_by_text("Launch settings:")).to_be_visible()

            # Upload the dataset through the button's file prompt.
            page.get_by_role("button", name="Upload a dataset").last.click()
            expect(page.get_by_text("Upload your dataset")).to_be_visible()
            page.set_input_files("#ask-button-input", str(dataset))
            expect(page.get_by_text("Data: orders.jsonl")).to_be_visible()
            expect(page.get_by_text("rows read")).to_be_visible()
            shot(page, shots, "chat-data.png")

            # Pilot first (#20): prompting and short tuned runs measured on the uploaded data, the advice revised.
            page.get_by_role("button", name="Pilot first").last.click()
            expect(page.get_by_text("queued: zero-shot and few-shot prompting")).to_be_visible()
            expect(page.get_by_text("Pilot finished").first).to_be_visible(timeout=240_000)
            expect(page.get_by_text("Advice stands", exact=False).or_(
                page.get_by_text("Advice changed", exact=False)).first).to_be_visible()
            expect(page.get_by_text("few-shot prompting |", exact=False).or_(
                page.get_by_role("cell", name="few-shot prompting")).first).to_be_visible()
            scroll_to(page.get_by_text("Pilot finished").last)
            shot(page, shots, "chat-pilot.png")

            # Approve & launch; the autostarted worker trains and evaluates; the progress step and the curve.
            page.get_by_role("button", name="Approve & launch").last.click()
            expect(page.get_by_text("Launched run")).to_be_visible()
            expect(page.get_by_text("finished.").first).to_be_visible(timeout=240_000)
            expect(page.get_by_text("Evaluation: lora on tiny-model").first).to_be_visible()
            scroll_to(page.locator(".js-plotly-plot").last, "center")
            shot(page, shots, "chat-run.png")
            scroll_to(page.get_by_role("heading", name="Evaluation: lora on tiny-model").last)
            shot(page, shots, "chat-evaluation.png")

            # A follow-up question, answered from the run's own report.
            say("Is it better than few-shot prompting?")
            expect(page.get_by_text("Against few-shot prompting: tuned")).to_be_visible()
            shot(page, shots, "chat-results.png")

            # A/B on an evaluated example; the vote is recorded in the run directory.
            page.get_by_role("button", name="Compare tuned vs base (A/B)").click()
            expect(page.get_by_text("Which answer is better?")).to_be_visible()
            page.get_by_role("button", name="A is better").click()
            expect(page.get_by_text("Recorded:")).to_be_visible()
            shot(page, shots, "chat-playground.png")

            # A cited source of the recommendation opens beside the chat; the conversation stays on screen.
            link = page.locator("a.element-link", has_text="lora#when-to-use-it").first
            scroll_to(link, "center")
            link.click()
            side = page.locator("#side-view-content")
            expect(side.get_by_text("LoRA — When to use it")).to_be_visible()
            expect(side.get_by_text("cited by a rule")).to_be_visible()
            expect(page.get_by_text("Recorded:")).to_be_visible()  # the last message, still on the chat page
            assert "/element/" not in page.url
            shot(page, shots, "chat-citation.png")
        finally:
            browser.close()
    assert outside == []

    from executor.runs.store import RunStore

    runs = RunStore(home / "runs.sqlite").list()
    assert [(r["owner"], r["kind"], r["status"]) for r in runs] == [(USER, "pilot", "succeeded"),
                                                                    (USER, "train", "succeeded")]
    assert (Path(runs[0]["run_dir"]) / "pilot.json").exists()
    run_dir = Path(runs[1]["run_dir"])
    assert (run_dir / "report.json").exists() and (run_dir / "human_preferences.jsonl").exists()
