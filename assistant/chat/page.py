"""The chat page loads nothing from outside the server: Chainlit's index.html links Google Fonts (with preconnects)
and KaTeX's stylesheet on a public CDN, which a machine without internet waits on and which tells those hosts who
opens the chat. The page keeps the system font stack; LaTeX is off in .chainlit/config.toml, so KaTeX is unused.

Lazy imports: chainlit.server is imported by install(), so the page filter can be used (and tested) without
Chainlit's server module.
"""

from __future__ import annotations

import re

# <link ...> tags whose href leaves the server (http:// or https://, or protocol-relative //host)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]*\"[^>]*/?>\s*", re.IGNORECASE)
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"(?:https?:)?//[^\"]*\"[^>]*>\s*</script>\s*", re.IGNORECASE)


def without_external_resources(html: str) -> str:
    return _EXTERNAL_SCRIPT.sub("", _EXTERNAL_LINK.sub("", html))


def install() -> None:
    """Serve Chainlit's page without its external links (the page is built per request by get_html_template)."""
    import chainlit.server

    built = chainlit.server.get_html_template
    if getattr(built, "tunewise_offline", False):
        return

    def offline_template(root_path):
        return without_external_resources(built(root_path))

    offline_template.tunewise_offline = True
    offline_template.__wrapped__ = built  # Chainlit's own, for comparison
    chainlit.server.get_html_template = offline_template
