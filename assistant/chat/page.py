"""The chat page loads nothing from outside the server: Chainlit's index.html links Google Fonts (with preconnects)
and KaTeX's stylesheet on a public CDN, which a machine without internet waits on and which tells those hosts who
opens the chat. The page keeps the system font stack; LaTeX is off in .chainlit/config.toml, so KaTeX is unused.

The page also carries side_sources.js, inline: a cited passage opens in Chainlit's side panel beside the chat when
its link is clicked, and the panel does not open by itself when a message brings passages (Chainlit 2.11+ does).

Lazy imports: chainlit.server is imported by install(), so the page filter can be used (and tested) without
Chainlit's server module.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

# <link ...> tags whose href leaves the server (http:// or https://, or protocol-relative //host)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]*\"[^>]*/?>\s*", re.IGNORECASE)
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"(?:https?:)?//[^\"]*\"[^>]*>\s*</script>\s*", re.IGNORECASE)


SIDE_SOURCES_JS = Path(__file__).with_name("side_sources.js")


def without_external_resources(html: str) -> str:
    return _EXTERNAL_SCRIPT.sub("", _EXTERNAL_LINK.sub("", html))


@cache
def _side_sources_script() -> str:
    return f"<script>\n{SIDE_SOURCES_JS.read_text(encoding='utf-8')}</script>\n"


def with_side_sources(html: str) -> str:
    """The page with side_sources.js inline, at the end of its body (after Chainlit's own scripts)."""
    script = _side_sources_script()
    at = html.rfind("</body>")
    return html + script if at < 0 else html[:at] + script + html[at:]


def install() -> None:
    """Serve Chainlit's page without its external links (the page is built per request by get_html_template)."""
    import chainlit.server

    built = chainlit.server.get_html_template
    if getattr(built, "tunewise_offline", False):
        return

    def offline_template(root_path):
        return with_side_sources(without_external_resources(built(root_path)))

    offline_template.tunewise_offline = True
    offline_template.__wrapped__ = built  # Chainlit's own, for comparison
    chainlit.server.get_html_template = offline_template
