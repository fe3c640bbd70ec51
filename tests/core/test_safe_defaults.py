"""Out of the box the server is safe to start on a shared machine: it listens on loopback only, its development
SECRET_KEY is its own, and the web page runs under a Content-Security-Policy."""
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_KEY = "insecure-default-key-for-local-development-only"
PROBE = ("import json, django; from django.conf import settings as s; django.setup(); "
         "print(json.dumps({'key': s.SECRET_KEY, 'jwt': s.SIMPLE_JWT['SIGNING_KEY']}))")


def settings_of(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "JWT_SIGNING_KEY")}
    clean.update(DJANGO_SETTINGS_MODULE="imserver.settings", **env)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60)


def test_make_run_listens_on_loopback_unless_told_otherwise():
    def daphne_line(*args):
        dry = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        return next(line for line in dry.stdout.splitlines() if " -p " in line and "-b " in line)

    assert " -b 127.0.0.1 " in daphne_line()
    assert " -b 0.0.0.0 " in daphne_line("HOST=0.0.0.0")


def test_without_a_secret_key_development_uses_one_made_for_this_checkout():
    first, second = settings_of(), settings_of()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first, second = json.loads(first.stdout), json.loads(second.stdout)
    key_file = ROOT / ".secret_key"
    assert first["key"] == second["key"] == key_file.read_text().strip()
    assert first["key"] != PUBLISHED_KEY and len(first["key"]) >= 50
    assert first["jwt"] == first["key"]  # tokens are signed with it
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ignored = subprocess.run(["git", "check-ignore", "-q", str(key_file)], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0, ".secret_key must never be committed"


def test_the_published_development_key_counts_as_none():
    assert json.loads(settings_of(SECRET_KEY=PUBLISHED_KEY).stdout)["key"] != PUBLISHED_KEY
    refused = settings_of(SECRET_KEY=PUBLISHED_KEY, DEBUG="false")
    assert refused.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in refused.stderr


def test_production_needs_a_secret_key_and_uses_the_one_given():
    refused = settings_of(DEBUG="false")
    assert refused.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in refused.stderr
    given = settings_of(DEBUG="false", SECRET_KEY="k" * 60)
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout) == {"key": "k" * 60, "jwt": "k" * 60}


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    make = ("import sys; from pathlib import Path; from imserver.secret_key import development_secret_key; "
            "print(development_secret_key(Path(sys.argv[1])))")
    path = tmp_path / ".secret_key"
    starts = [subprocess.Popen([sys.executable, "-c", make, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
              for _ in range(8)]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in starts}
    assert all(proc.returncode == 0 for proc in starts)
    assert keys == {path.read_text().strip()} and len(keys.pop()) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".secret_key"], "no half-made key files are left behind"


@pytest.mark.django_db
def test_the_web_page_runs_under_a_content_security_policy():
    page = Client().get("/")
    assert page.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"  # scripts and styles: the page's own files only, nothing inline
    assert set(policy["connect-src"].split()) == {"'self'", "ws://testserver", "wss://testserver"}
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page["Content-Security-Policy"]
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), "an inline script would be blocked"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), "inline styles and handlers would be blocked"


@pytest.mark.django_db
def test_the_policy_names_the_host_the_page_was_asked_for():
    page = Client().get("/", HTTP_HOST="127.0.0.1:8000")
    assert "connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000" in page["Content-Security-Policy"]
