"""`/`: a small page linking what a person can open in a browser (the agent desktop, the supervisor console
when it is installed, the widget demo, the API reference and health), instead of a 404."""

from __future__ import annotations

from html import escape
from pathlib import Path

from litestar import MediaType, get
from litestar.handlers import HTTPRouteHandler

__all__ = ["home_page", "links"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }}
  header {{ background: #1d2330; color: #fff; padding: .8em 1.2em; }}
  header h1 {{ font-size: 1.3em; margin: 0; }}
  main {{ max-width: 44em; margin: 1.5em auto; padding: 0 1em; }}
  ul {{ list-style: none; padding: 0; margin: 0; }}
  li {{ background: #fff; border-radius: 6px; padding: .8em 1em; margin: .6em 0; box-shadow: 0 1px 2px #0002; }}
  a {{ font-weight: 600; color: #1d4fa8; }}
  p.what {{ margin: .2em 0 0; color: #4a5366; }}
  code {{ background: #eef0f4; padding: 0 .3em; border-radius: 3px; }}
</style>
</head>
<body>
<header><h1>Switchboard</h1></header>
<main>
<p>This platform is running. Open one of these:</p>
<ul>
{items}
</ul>
</main>
</body>
</html>
"""


def links(web_dir: Path) -> list[tuple[str, str, str]]:
    """(href, title, what it is for), the supervisor console only when its page is installed."""
    found = [
        (
            "/agent/",
            "Agent desktop",
            "Take calls in the browser. Sign in with the link that <code>switchboard agents token EMAIL</code> "
            "prints.",
        ),
    ]
    if (web_dir / "supervisor" / "index.html").is_file():
        found.append(("/supervisor/", "Supervisor console", "Queues, agents and service level, live."))
    found += [
        ("/widget/", "Click-to-call widget", "A demo page of the widget a company puts on its web site."),
        ("/schema", "API reference", "Every REST endpoint (OpenAPI); the same as docs/api.md."),
        ("/healthz", "Health", "PostgreSQL, NATS and every service, as JSON."),
    ]
    return found


def home_page(web_dir: Path) -> HTTPRouteHandler:
    @get("/", media_type=MediaType.HTML, include_in_schema=False, name="home")
    async def home() -> str:
        items = "\n".join(
            f'<li><a href="{escape(href)}">{escape(title)}</a><p class="what">{what}</p></li>'
            for href, title, what in links(web_dir)
        )
        return _PAGE.format(items=items)

    return home
