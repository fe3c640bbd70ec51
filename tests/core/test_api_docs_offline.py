"""/docs (Swagger UI) and /redoc work without any outside network: every asset they load is served here."""
import re

import pytest

ASSET = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def assets(html: str) -> list[str]:
    return ASSET.findall(html)


def assert_offline(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    found = assets(html)
    assert found, "the page loads no asset at all"
    outside = [url for url in found if not url.startswith("/") or url.startswith("//")]
    assert outside == [], f"{path} loads from outside the server: {outside}"
    for url in found:
        served = client.get(url)
        assert served.status_code == 200, url
        if hasattr(served, "streaming_content"):
            assert b"".join(served.streaming_content), url
        else:
            assert served.content, url
    return html


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
def test_swagger_ui_loads_only_local_assets(db, client, path):
    html = assert_offline(client, path)

    assert "swagger-ui-bundle.js" in html
    assert "/api/schema" in html
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize("path", ["/redoc", "/redoc/"])
def test_redoc_loads_only_local_assets(db, client, path):
    html = assert_offline(client, path)

    assert "redoc.standalone.js" in html and "/api/schema" in html


@pytest.mark.parametrize("path", ["/redoc", "/redoc/"])
def test_redoc_page_and_its_script_are_served(db, client, path):
    response = client.get(path)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    scripts = [url for url in assets(response.content.decode()) if url.endswith(".js")]
    assert scripts and all(url.startswith("/static/") for url in scripts)
    assert all(client.get(url).status_code == 200 for url in scripts)
