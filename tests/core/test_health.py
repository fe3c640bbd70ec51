"""/health answers while the process serves; /health/ready names the database, channel layer and task broker."""
import pytest

from imserver import health


@pytest.mark.parametrize("path", ["/health", "/health/"])
def test_health_is_ok(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/health/ready", "/health/ready/"])
def test_ready_checks_database_channel_layer_and_broker(db, client, path):
    response = client.get(path)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "channel_layer", "task_broker"}
    assert all(value.startswith("ok") for value in body["checks"].values()), body


def test_ready_is_503_naming_the_failing_check(db, client, monkeypatch):
    def broken():
        raise ConnectionError("refused")

    monkeypatch.setitem(health.CHECKS, "channel_layer", broken)

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] != "ok"
    assert body["checks"]["channel_layer"].startswith("failed")
    assert body["checks"]["database"].startswith("ok")
    assert body["failing"] == ["channel_layer"]
    assert "Traceback" not in response.content.decode()


def test_health_needs_no_credentials_and_refuses_writes(client):
    assert client.post("/health").status_code == 405
