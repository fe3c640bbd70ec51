"""The failover settings from the environment: replicas become database aliases behind the router; Sentinels carry
the channel layer, the Celery broker (and results) and the cache; several channel-layer hosts shard the layer."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
from django.conf import settings as s
django.setup()
from django.core.cache import caches
from imserver.cache import redis_connection_pool
pool = redis_connection_pool(s.REDIS_URL) if s.REDIS_URL else None
print(json.dumps({
    "databases": {alias: {"port": d["PORT"], "mirror": d["TEST"].get("MIRROR"), "pool": bool(d["OPTIONS"].get("pool"))}
                  for alias, d in s.DATABASES.items()},
    "routers": s.DATABASE_ROUTERS,
    "layer_hosts": s.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "broker": s.CELERY_BROKER_URL, "broker_master": s.CELERY_BROKER_TRANSPORT_OPTIONS.get("master_name"),
    "results_master": s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS.get("master_name"),
    "visibility_timeout": s.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout"),
    "pool": type(pool).__name__, "pool_service": getattr(pool, "service_name", None),
    "pool_db": pool.connection_kwargs.get("db") if pool else None,
}, default=str))
"""
KNOBS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DATABASE_REPLICA_URLS", "REDIS_SENTINELS",
         "REDIS_SENTINEL_MASTER", "CHANNEL_LAYER_HOSTS", "CELERY_RESULT_BACKEND")


def load(**env):
    clean = {k: v for k, v in os.environ.items() if k not in KNOBS}
    clean.update(DJANGO_SETTINGS_MODULE="imserver.settings", **env)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60)


def conf(**env) -> dict:
    result = load(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_replicas_are_aliases_behind_the_router_with_the_primarys_pool():
    c = conf(DATABASE_URL="postgres://u@db.example:5432/im",
             DATABASE_REPLICA_URLS="postgres://u@replica-a.example:5432/im,postgres://u@replica-b.example:5433/im")
    assert c["databases"] == {"default": {"port": 5432, "mirror": None, "pool": True},
                              "replica1": {"port": 5432, "mirror": "default", "pool": True},
                              "replica2": {"port": 5433, "mirror": "default", "pool": True}}
    assert c["routers"] == ["imserver.dbrouter.ReplicaRouter"]
    assert conf(DATABASE_URL="postgres://u@db.example:5432/im")["routers"] == []


def test_replicas_need_postgresql():
    refused = load(DATABASE_REPLICA_URLS="postgres://u@replica.example/im")
    assert refused.returncode != 0 and "DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL" in refused.stderr


def test_sentinels_carry_the_layer_the_broker_and_the_cache():
    c = conf(REDIS_SENTINELS="10.0.0.21:26379,10.0.0.22:26379", REDIS_SENTINEL_MASTER="care",
             REDIS_URL="redis://:secret@ignored:6379/3")
    (host,) = c["layer_hosts"]
    assert host["sentinels"] == [["10.0.0.21", 26379], ["10.0.0.22", 26379]] and host["master_name"] == "care"
    assert host["db"] == 3 and host["password"] == "secret"
    assert c["broker"] == "sentinel://:secret@10.0.0.21:26379/3;sentinel://:secret@10.0.0.22:26379/3"
    assert c["broker_master"] == c["results_master"] == "care"
    assert c["visibility_timeout"]  # the transport's own options are kept
    assert c["pool"] == "SentinelConnectionPool" and c["pool_service"] == "care" and c["pool_db"] == 3
    # REDIS_URL may be left out: the Sentinels name the master, db 0.
    assert conf(REDIS_SENTINELS="10.0.0.21:26379")["broker"] == "sentinel://10.0.0.21:26379/0"


def test_without_sentinels_redis_is_the_url_and_the_layer_may_shard():
    c = conf(REDIS_URL="redis://cache.example:6379/0")
    assert c["layer_hosts"] == ["redis://cache.example:6379/0"] and c["broker_master"] is None
    assert c["pool"] == "ConnectionPool"
    sharded = conf(REDIS_URL="redis://a.example:6379/0",
                   CHANNEL_LAYER_HOSTS="redis://a.example:6379/0,redis://b.example:6379/0")
    assert sharded["layer_hosts"] == ["redis://a.example:6379/0", "redis://b.example:6379/0"]
