"""The Django admin's pages for users, groups and messages: shown to a staff superuser, refused to anyone else."""
import pytest

from chat.services import message_send


@pytest.fixture
def pages(care_group, doctor):
    message = message_send(sender=doctor, group=care_group, content="hello")[0]
    return {
        "users": ["/admin/users/user/", "/admin/users/user/add/", f"/admin/users/user/{doctor.pk}/change/"],
        "groups": ["/admin/groups/chatgroup/", "/admin/groups/chatgroup/add/",
                   f"/admin/groups/chatgroup/{care_group.pk}/change/"],
        "messages": ["/admin/chat/message/", "/admin/chat/message/add/",
                     f"/admin/chat/message/{message.pk}/change/"],
    }


@pytest.mark.parametrize("section", ["users", "groups", "messages"])
def test_staff_superuser_sees_changelist_add_and_change_pages(pages, admin_browser, section):
    for url in pages[section]:
        response = admin_browser.get(url)
        assert response.status_code == 200, url


def test_admin_index_lists_the_three_sections(pages, admin_browser):
    html = admin_browser.get("/admin/").content.decode()

    for link in ("/admin/users/user/", "/admin/groups/chatgroup/", "/admin/chat/message/"):
        assert link in html


def test_changelists_show_the_stored_rows(pages, admin_browser, doctor, care_group):
    assert doctor.username in admin_browser.get("/admin/users/user/").content.decode()
    assert "Ward 7" in admin_browser.get("/admin/groups/chatgroup/").content.decode()
    assert "hello" in admin_browser.get("/admin/chat/message/").content.decode()


def test_group_change_page_shows_its_members_inline(pages, admin_browser, care_group, patient):
    html = admin_browser.get(f"/admin/groups/chatgroup/{care_group.pk}/change/").content.decode()

    assert 'name="memberships-TOTAL_FORMS"' in html
    assert patient.username in html


@pytest.mark.parametrize("section", ["users", "groups", "messages"])
def test_non_staff_user_is_sent_to_the_login_page(pages, doctor, client, section):
    client.force_login(doctor)  # a DOCTOR, but not staff

    for url in pages[section]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


@pytest.mark.parametrize("section", ["users", "groups", "messages"])
def test_anonymous_visitor_is_sent_to_the_login_page(pages, client, section):
    for url in pages[section]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_non_staff_cannot_post_to_the_admin(pages, patient, care_group, client):
    client.force_login(patient)

    response = client.post(f"/admin/groups/chatgroup/{care_group.pk}/change/", {"group_name": "Taken over"})

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    care_group.refresh_from_db()
    assert care_group.group_name == "Ward 7"
