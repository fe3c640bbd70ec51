"""Settings come from the environment: embedded defaults, production parts, and refusing unsafe production."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings as s; django.setup(); "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], "
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'in_process': s.AI_TASKS_IN_PROCESS, 'broker': s.CELERY_BROKER_URL, "
    "'max_chars': s.IM_MAX_MESSAGE_CHARS, "
    "'cors': s.CORS_ALLOWED_ORIGINS}))"
)
KNOBS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "AI_TASKS_IN_PROCESS",
         "SECRET_KEY", "DEBUG", "IM_MAX_MESSAGE_CHARS", "CORS_ALLOWED_ORIGINS", "CHANNEL_LAYER_BACKEND")


def load(**env):
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    clean.update(DJANGO_SETTINGS_MODULE="imserver.settings", **env)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60)


def test_nothing_set_means_the_embedded_system():
    result = load()
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["db"] == "django.db.backends.sqlite3"
    assert conf["layer"] == "channels.layers.InMemoryChannelLayer"
    assert conf["eager"] is True and conf["in_process"] is True and conf["broker"] == ""
    assert conf["max_chars"] == 4000


def test_urls_switch_to_production_parts():
    result = load(DATABASE_URL="postgres://u@db.example:5432/im", REDIS_URL="redis://cache.example:6379/0",
                  IM_MAX_MESSAGE_CHARS="500", CORS_ALLOWED_ORIGINS="https://care.example.org")
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["db"] == "django.db.backends.postgresql"
    assert conf["layer"] == "imserver.channel_layer.BatchedPubSubChannelLayer"
    assert conf["eager"] is False and conf["in_process"] is False and conf["broker"] == "redis://cache.example:6379/0"
    assert conf["max_chars"] == 500 and conf["cors"] == ["https://care.example.org"]


def test_core_layer_on_request():
    conf = json.loads(load(REDIS_URL="redis://cache.example:6379/0", CHANNEL_LAYER_BACKEND="core").stdout)
    assert conf["layer"] == "channels_redis.core.RedisChannelLayer"


def test_production_refuses_the_default_secret_key():
    refused = load(DEBUG="false")
    assert refused.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in refused.stderr
    accepted = load(DEBUG="false", SECRET_KEY="a-real-secret-from-the-environment")
    assert accepted.returncode == 0, accepted.stderr


POOL_PROBE = (
    "import json, django; from django.conf import settings as s; django.setup(); d = s.DATABASES['default']; "
    "pool = d['OPTIONS'].get('pool') or {}; "
    "print(json.dumps({'max_age': d['CONN_MAX_AGE'], 'pool': {k: pool[k] for k in pool if k in "
    "('min_size', 'max_size', 'timeout', 'reconnect_timeout')}}))"
)


def _pool_conf(**env):
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS and not k.startswith("DB_")}
    clean.update(DJANGO_SETTINGS_MODULE="imserver.settings", DATABASE_URL="postgres://u@db.example:5432/im", **env)
    result = subprocess.run([sys.executable, "-c", POOL_PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_postgresql_connections_come_from_a_pool_unless_switched_off():
    assert _pool_conf() == {"max_age": 0, "pool": {"min_size": 2, "max_size": 10, "timeout": 10.0,
                                                   "reconnect_timeout": 0.0}}
    assert _pool_conf(DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="4", DB_POOL_TIMEOUT="2.5")["pool"] == {
        "min_size": 1, "max_size": 4, "timeout": 2.5, "reconnect_timeout": 0.0}
    # Off, the persistent connections of before: DB_CONN_MAX_AGE seconds each.
    assert _pool_conf(DB_POOL="false") == {"max_age": 60, "pool": {}}
    assert _pool_conf(DB_POOL="false", DB_CONN_MAX_AGE="5") == {"max_age": 5, "pool": {}}
