"""Issue 17 item 22: /api/docs loads Swagger UI from the package, never from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from solarbridge.api.app import create_app
from support.api import client_for, make_supervisor, run


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_page_references_only_local_urls_that_answer(tmp_path) -> None:
    sup = make_supervisor(tmp_path)

    async def go() -> None:
        async with client_for(create_app(sup)) as c:
            page = await c.get("/api/docs")
            assert page.status_code == 200
            html = page.text
            refs = _Refs()
            refs.feed(html)
            # the stylesheet, the icon, the script, and the spec the script loads
            spec = re.search(r"url:\s*'([^']+)'", html)
            assert spec is not None
            urls = refs.urls + [spec.group(1)]
            assert len(urls) >= 4
            assert not re.search(r"https?://", html), "the page names an outside address"
            for url in urls:
                assert url.startswith("/") and not url.startswith("//"), url
                r = await c.get(url)
                assert r.status_code == 200, url
                assert r.content, url
            js = await c.get("/api/docs/assets/swagger-ui-bundle.js")
            assert "SwaggerUIBundle" in js.text[:200_000] or "SwaggerUIBundle" in js.text
            assert (await c.get("/api/openapi.json")).json()["info"]["title"] == "solarbridge"

    run(go())
