"""The chat's request guard (#17): only the chat's own origin (and origins an admin lists) may call it with a
user's cookies, websockets included; every request's client address reaches the login throttle."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from assistant.chat.guard import RequestGuard, client_address, same_origin


async def threads(request):
    return PlainTextResponse(f"alice's threads, for {client_address.get()}")


async def socket(websocket):
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def client(allowed=()) -> TestClient:
    app = Starlette(routes=[Route("/project/threads", threads, methods=["GET", "POST"]),
                            WebSocketRoute("/ws", socket)])
    app.add_middleware(RequestGuard, allowed_origins=allowed)
    return TestClient(app, base_url="http://127.0.0.1:8000")


def test_the_chats_own_origin_and_requests_without_one_pass():
    c = client()
    assert c.get("/project/threads").text == "alice's threads, for testclient"
    assert c.post("/project/threads", headers={"Origin": "http://127.0.0.1:8000"}).status_code == 200
    with c.websocket_connect("ws://127.0.0.1:8000/ws", headers={"Origin": "http://127.0.0.1:8000"}) as ws:
        assert ws.receive_text() == "hello"


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9000", "http://evil.example", "null", "file://",
                                    "http://127.0.0.1:8000.evil.example", "https://127.0.0.1:8000@evil"])
def test_another_origin_is_refused_http_and_websocket(origin):
    c = client()
    response = c.post("/project/threads", headers={"Origin": origin})
    assert response.status_code == 403 and "allow_origins" in response.json()["detail"]
    assert c.options("/project/threads", headers={"Origin": origin,
                                                  "Access-Control-Request-Method": "POST"}).status_code == 403
    with pytest.raises(WebSocketDisconnect) as closed:
        c.websocket_connect("ws://127.0.0.1:8000/ws", headers={"Origin": origin}).__enter__()
    assert closed.value.code == 1008


def test_an_admin_can_list_other_origins():
    c = client(["https://chat.example.com/"])
    assert c.post("/project/threads", headers={"Origin": "https://chat.example.com"}).status_code == 200
    assert c.post("/project/threads", headers={"Origin": "https://other.example.com"}).status_code == 403
    assert client(["*"]).post("/project/threads", headers={"Origin": "http://anything"}).status_code == 200


def test_same_origin_compares_scheme_host_and_port():
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://Chat.Example.com", "chat.example.com")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("ftp://127.0.0.1:8000", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000")


def test_the_chat_page_links_nothing_outside_the_server():
    """Chainlit's own index.html, as the chat serves it: no Google Fonts, no CDN stylesheet (#17)."""
    import chainlit.server

    from assistant.chat import page

    template = chainlit.server.get_html_template  # (wrapped already when the chat app was imported before)
    original = getattr(template, "__wrapped__", template)("")
    assert "fonts.googleapis.com" in original and "cdn.jsdelivr.net" in original  # what Chainlit ships
    served = page.without_external_resources(original)
    assert "https://fonts" not in served and "cdn.jsdelivr" not in served and "//fonts" not in served
    assert '<script type="module" crossorigin src="/assets/' in served and '<div id="root"></div>' in served
    assert page.without_external_resources('<script src="//cdn.example/x.js"></script><p>kept</p>') == "<p>kept</p>"


def test_the_chat_page_carries_the_side_panel_script_inline_once():
    """Cited passages open beside the chat only on a click (#18): side_sources.js travels inside the page, after
    Chainlit's own scripts, and loads nothing from anywhere."""
    import chainlit.server

    from assistant.chat import page

    page.install()
    served = chainlit.server.get_html_template("")
    script = page.SIDE_SOURCES_JS.read_text(encoding="utf-8")
    assert served.count(script) == 1 and served.index(script) < served.rindex("</body>")
    assert served.index('<script type="module" crossorigin src="/assets/') < served.index(script)
    assert "fetch(" not in script and "XMLHttpRequest" not in script and "src=" not in script
    page.install()  # installing twice does not add it twice
    assert chainlit.server.get_html_template("").count(script) == 1
