"""Paging and catch-up parameters out of bounds are a VALIDATION_ERROR; a page past the end is empty."""
import pytest

from chat.services import message_send
from tests.support.api import assert_error

BAD_PAGING = ["page_size=0", "page_size=101", "page_size=-1", "page=0", "page=-3", "page=abc", "page_size=1.5",
              "page_size=ten"]


@pytest.fixture
def group_with_message(care_group, doctor):
    message_send(sender=doctor, group=care_group, content="hi")
    return care_group


@pytest.mark.parametrize("query", BAD_PAGING)
def test_bad_paging_of_the_group_list(group_with_message, doctor, client_for, query):
    response = client_for(doctor).get(f"/api/group/?{query}")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert query.split("=")[0] in error["details"]


@pytest.mark.parametrize("query", BAD_PAGING)
def test_bad_paging_of_the_message_list(group_with_message, doctor, client_for, query):
    response = client_for(doctor).get(f"/api/message/list?group_id={group_with_message.group_id}&{query}")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert query.split("=")[0] in error["details"]


@pytest.mark.parametrize("query", ["after_seq=-1", "after_seq=x", "after_seq=0&limit=0", "after_seq=0&limit=501",
                                   "after_seq=0&limit=-5", "limit=10", "after_seq=0&page=1",
                                   "after_seq=0&page_size=10", "after_seq=99999999999999999999"])
def test_bad_catch_up_params(group_with_message, doctor, client_for, query):
    response = client_for(doctor).get(f"/api/message/list?group_id={group_with_message.group_id}&{query}")

    assert_error(response, 400, "VALIDATION_ERROR")


def test_list_without_group_id_is_a_validation_error(doctor, client_for):
    error = assert_error(client_for(doctor).get("/api/message/list"), 400, "VALIDATION_ERROR")

    assert "group_id" in error["details"]


@pytest.mark.parametrize("page", ["2", "1000000", "99999999999999999999"])
def test_a_page_past_the_end_is_an_empty_list(group_with_message, doctor, client_for, page):
    groups = client_for(doctor).get(f"/api/group/?page={page}")
    messages = client_for(doctor).get(f"/api/message/list?group_id={group_with_message.group_id}&page={page}")

    assert groups.status_code == 200 and groups.json()["groups"] == [] and groups.json()["total"] == 1
    assert messages.status_code == 200 and messages.json()["messages"] == [] and messages.json()["total"] == 1


def test_a_very_large_after_seq_that_fits_is_an_empty_catch_up(group_with_message, doctor, client_for):
    response = client_for(doctor).get(
        f"/api/message/list?group_id={group_with_message.group_id}&after_seq={2**63 - 1}")

    assert response.status_code == 200 and response.json() == {"messages": [], "has_more": False}
