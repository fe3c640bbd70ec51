"""The OpenAPI schema at /api/schema is valid and documents every call of the contract."""
import pytest
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

# Every REST call of API.md, as (method, path) with the contract's own placeholders.
CONTRACT = [
    ("post", "/api/auth/token"),
    ("post", "/api/auth/token/refresh"),
    ("post", "/api/user/{user_id}/token"),
    ("post", "/api/user/create"),
    ("get", "/api/user/me"),
    ("get", "/api/user/{user_id}"),
    ("put", "/api/user/{user_id}/role"),
    ("post", "/api/group/create"),
    ("get", "/api/group/"),
    ("get", "/api/group/{group_id}"),
    ("patch", "/api/group/{group_id}"),
    ("post", "/api/group/{group_id}/members"),
    ("get", "/api/group/{group_id}/members"),
    ("delete", "/api/group/{group_id}/members/{user_id}"),
    ("post", "/api/message/send"),
    ("get", "/api/message/{message_id}"),
    ("get", "/api/message/list"),
    ("get", "/api/ai/interactions"),
    ("get", "/api/ai/interactions/{record_id}"),
    ("post", "/api/ai/test"),
]


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 meta-schema


def test_spectacular_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    assert out.read_text().startswith("openapi: 3")


@pytest.mark.parametrize("method,path", CONTRACT, ids=[f"{m} {p}" for m, p in CONTRACT])
def test_schema_lists_every_contract_call(schema, method, path):
    assert path in schema["paths"], sorted(schema["paths"])
    assert method in schema["paths"][path]


def test_list_calls_document_their_query_parameters(schema):
    group_list = {p["name"] for p in schema["paths"]["/api/group/"]["get"].get("parameters", [])}
    message_list = {p["name"] for p in schema["paths"]["/api/message/list"]["get"].get("parameters", [])}

    assert {"page", "page_size"} <= group_list
    assert {"group_id", "after_seq", "limit", "page", "page_size"} <= message_list


def test_error_responses_are_documented_in_the_contract_format(schema):
    send = schema["paths"]["/api/message/send"]["post"]["responses"]

    assert {"200", "201", "400", "403", "404", "413"} <= set(send)
    error_ref = send["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    error = schema["components"]["schemas"][error_ref]
    assert "error" in error["properties"]


def test_schema_is_served_as_json_and_yaml(client):
    assert client.get("/api/schema").content.startswith(b"openapi: 3")
    assert client.get("/api/schema/?format=json").json()["info"]["title"]
