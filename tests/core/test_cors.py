"""Cross-origin browser clients: allowed only for the origins in CORS_ALLOWED_ORIGINS."""


def test_listed_origin_may_call_the_api_and_others_may_not(db, client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://care.example.org"]
    preflight = {"HTTP_ORIGIN": "https://care.example.org", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
                 "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization,content-type"}
    allowed = client.options("/api/message/send", **preflight)
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://care.example.org"
    assert "authorization" in allowed.headers.get("Access-Control-Allow-Headers", "")
    other = client.options("/api/message/send", **{**preflight, "HTTP_ORIGIN": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
