"""The README's curl walkthrough runs as written, in order, against a live `make run`; `make help` lists the targets."""
import json
import re
import shutil
import subprocess
import time

import httpx
import pytest

from chat.models import Message
from groups.models import GroupMember
from tests.support.live import ROOT, needs_real_services
from users.models import User

pytestmark = [pytest.mark.django_db(transaction=True), needs_real_services()]

# curl, as the walkthrough calls it, also writing each call's method, path and status to stderr (outside any
# `$(...)` that captures its body), so that the test sees every step's answer.
CURL_WITH_STATUS = "curl() { command curl -w '%{stderr}@@ %{method} %{url_effective} %{http_code}\\n' \"$@\"; }\n"

# Each call of the walkthrough in order, with the status it must answer.
EXPECTED = [
    ("POST", "/api/auth/token", 200),
    ("POST", "/api/auth/token", 200),
    ("POST", "/api/user/create", 201),
    ("POST", "/api/group/create", 201),
    ("POST", "/api/group/{group}/members", 201),
    ("POST", "/api/message/send", 201),
    ("GET", "/api/message/list", 200),
    ("GET", "/api/message/list", 200),
    ("POST", "/api/user/{patient}/token", 200),
    ("POST", "/api/message/send", 201),
    ("GET", "/api/message/list", 200),
]


def walkthrough_blocks(readme: str) -> list[str]:
    """The sh blocks between the walkthrough's markers."""
    start = readme.index("<!-- walkthrough")
    end = readme.index("<!-- /walkthrough -->", start)
    return re.findall(r"```sh\n(.*?)```", readme[start:end], re.DOTALL)


def test_walkthrough_is_marked_and_sets_what_it_uses():
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())

    assert len(blocks) >= 6
    script = "".join(blocks)
    used = set(re.findall(r"\$\{?([A-Z_]+)", script))
    set_here = set(re.findall(r"(?m)^([A-Z_]+)=", script))
    assert used <= set_here, f"used but never set: {sorted(used - set_here)}"


def test_readme_walkthrough_runs_against_make_run(start_make_run, tmp_path):
    # No broker: as with make run's defaults, the AI bridge runs in the server process.
    server = start_make_run(CELERY_BROKER_URL="")
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    script = tmp_path / "walkthrough.sh"
    script.write_text("set -euo pipefail\n" + CURL_WITH_STATUS + "\n".join(blocks))

    done = subprocess.run(["bash", str(script)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{ROOT / '.venv/bin'}:/usr/local/bin:/usr/bin:/bin", "BASE": server.url})

    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("@@ ")]
    patient = User.objects.get(username="zhang_san")
    message = Message.objects.get(content="How are you feeling today?")
    group = message.group
    expected = [(m, server.url + p.format(group=group.group_id, patient=patient.user_id), s) for m, p, s in EXPECTED]
    got = [(method, url.split("?")[0], int(code)) for method, url, code in calls]
    assert got == expected, done.stderr
    # What the walkthrough did is in the database, as its comments say.
    assert patient.user_role == "PATIENT"
    assert GroupMember.objects.get(group=group, user=patient).user_role == "PATIENT"
    assert (message.seq, message.from_role, message.client_msg_id) == (1, "DOCTOR", "dr-0001")
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    paged = next(a for a in answers if "total" in a)
    catch_up = next(a for a in answers if "has_more" in a)
    assert (paged["total"], paged["page"], paged["page_size"]) == (1, 1, 20)
    assert [m["seq"] for m in catch_up["messages"]] == [1] and catch_up["has_more"] is False
    # make run's AI_PORT reached the server's AI_SERVICE_URL: the assistant answers the patient.
    deadline = time.monotonic() + 30
    while not Message.objects.filter(group=group, msg_type="AI_REPLY").exists():
        assert time.monotonic() < deadline, "no AI reply: make run's AI service is not the one the server calls"
        time.sleep(0.2)
    reply = Message.objects.get(group=group, msg_type="AI_REPLY")
    assert reply.reply_to.content == "A little tired, but better." and reply.seq == 3


def ai_service_answers(url: str, grace: float = 20.0) -> bool:
    """make run starts the reference AI service beside the server: it may answer a moment after the server does."""
    deadline = time.monotonic() + grace
    while True:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_make_run_serves_on_its_port_with_the_demo(start_make_run):
    server = start_make_run()

    printed = server.output()
    assert f"http://127.0.0.1:{server.port}" in printed and f":{server.ai_port}" in printed
    assert ai_service_answers(f"http://127.0.0.1:{server.ai_port}/")
    login = httpx.post(f"{server.url}/api/auth/token", json={"username": "dr_chen", "password": "doctor-demo-pass"})
    assert login.status_code == 200


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target_with_one_line():
    done = subprocess.run(["make", "--no-print-directory", "help"], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=30)

    assert done.returncode == 0, done.stderr
    listed = dict(re.findall(r"(?m)^  make (\S+)\s+(.+)$", done.stdout))
    targets = set(re.findall(r"(?m)^([a-z][a-z-]*):(?!=)", (ROOT / "Makefile").read_text()))
    assert targets <= set(listed), f"not in make help: {sorted(targets - set(listed))}"
    assert all(text.strip() for text in listed.values())
