"""Reading messages: one by id, paged history newest first with total, and catch-up after a seq."""
import pytest

from chat.services import message_send
from groups.services import group_create


@pytest.fixture
def history(care_group, doctor, patient):
    """Seven messages, seq 1..7, alternating doctor and patient."""
    return [message_send(sender=doctor if i % 2 else patient, group=care_group, content=f"m{i}")[0]
            for i in range(1, 8)]


def seqs(body):
    return [m["seq"] for m in body["messages"]]


@pytest.mark.parametrize("who", ["doctor", "patient", "assistant", "staff"])
def test_members_and_staff_get_a_message_by_id(care_group, history, client_for, request, who):
    wanted = history[2]

    response = client_for(request.getfixturevalue(who)).get(f"/api/message/{wanted.message_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["message_id"] == wanted.message_id and body["seq"] == 3 and body["content"] == "m3"
    assert body["group_id"] == care_group.group_id and body["from_user_id"] == wanted.sender.user_id


def test_get_a_message_with_trailing_slash(history, doctor, client_for):
    assert client_for(doctor).get(f"/api/message/{history[0].message_id}/").status_code == 200


@pytest.mark.parametrize("path", ["/api/message/list?group_id={}", "/api/message/list/?group_id={}"])
def test_list_is_newest_first_with_total_and_default_page(care_group, history, patient, client_for, path):
    response = client_for(patient).get(path.format(care_group.group_id))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"messages", "total", "page", "page_size"}
    assert body["total"] == 7 and body["page"] == 1 and body["page_size"] == 20
    assert seqs(body) == [7, 6, 5, 4, 3, 2, 1]
    assert body["messages"][0]["content"] == "m7"


def test_list_pages_through_the_history(care_group, history, patient, client_for):
    client = client_for(patient)
    url = f"/api/message/list?group_id={care_group.group_id}&page_size=3"

    pages = [client.get(f"{url}&page={page}").json() for page in (1, 2, 3, 4)]

    assert [seqs(p) for p in pages] == [[7, 6, 5], [4, 3, 2], [1], []]
    assert all(p["total"] == 7 and p["page_size"] == 3 for p in pages)
    assert [p["page"] for p in pages] == [1, 2, 3, 4]


def test_list_total_counts_only_this_groups_messages(care_group, history, doctor, client_for):
    other = group_create(creator=doctor, group_name="Other")
    message_send(sender=doctor, group=other, content="elsewhere")

    body = client_for(doctor).get(f"/api/message/list?group_id={care_group.group_id}").json()

    assert body["total"] == 7 and "elsewhere" not in [m["content"] for m in body["messages"]]


def test_list_of_an_empty_group(care_group, doctor, client_for):
    body = client_for(doctor).get(f"/api/message/list?group_id={care_group.group_id}").json()

    assert body == {"messages": [], "total": 0, "page": 1, "page_size": 20}


def test_catch_up_returns_later_messages_ascending(care_group, history, patient, client_for):
    response = client_for(patient).get(f"/api/message/list?group_id={care_group.group_id}&after_seq=4")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"messages", "has_more"}
    assert seqs(body) == [5, 6, 7] and body["has_more"] is False


def test_catch_up_with_limit_says_whether_more_follow(care_group, history, patient, client_for):
    client = client_for(patient)
    url = f"/api/message/list?group_id={care_group.group_id}"

    first = client.get(f"{url}&after_seq=0&limit=3").json()
    second = client.get(f"{url}&after_seq={first['messages'][-1]['seq']}&limit=3").json()
    last = client.get(f"{url}&after_seq={second['messages'][-1]['seq']}&limit=3").json()
    exact = client.get(f"{url}&after_seq=4&limit=3").json()

    assert (seqs(first), first["has_more"]) == ([1, 2, 3], True)
    assert (seqs(second), second["has_more"]) == ([4, 5, 6], True)
    assert (seqs(last), last["has_more"]) == ([7], False)
    assert (seqs(exact), exact["has_more"]) == ([5, 6, 7], False)


def test_catch_up_at_the_head_is_empty(care_group, history, patient, client_for):
    body = client_for(patient).get(f"/api/message/list?group_id={care_group.group_id}&after_seq=7").json()

    assert body == {"messages": [], "has_more": False}


def test_catch_up_limit_defaults_to_100(care_group, doctor, client_for):
    for i in range(101):
        message_send(sender=doctor, group=care_group, content=f"n{i}")

    body = client_for(doctor).get(f"/api/message/list?group_id={care_group.group_id}&after_seq=0").json()

    assert len(body["messages"]) == 100 and body["has_more"] is True
    assert seqs(body) == list(range(1, 101))


def test_catch_up_limit_of_500_passes(care_group, history, doctor, client_for):
    response = client_for(doctor).get(f"/api/message/list?group_id={care_group.group_id}&after_seq=0&limit=500")

    assert response.status_code == 200 and seqs(response.json()) == [1, 2, 3, 4, 5, 6, 7]


def test_staff_lists_a_group_it_is_not_in(care_group, history, staff, client_for):
    body = client_for(staff).get(f"/api/message/list?group_id={care_group.group_id}").json()

    assert body["total"] == 7
