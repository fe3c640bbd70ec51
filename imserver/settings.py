"""Settings for the IM server: every knob comes from the environment, with an embedded default.

No variable set means the embedded system: SQLite in the project folder, the in-memory channel
layer and Celery tasks run in-process. `.env.example` lists every knob with its meaning.
"""
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The development key that used to be the default is published: it counts as no key at all.
PUBLISHED_SECRET_KEY = "insecure-default-key-for-local-development-only"
SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=True)
if SECRET_KEY in ("", PUBLISHED_SECRET_KEY):
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    from imserver.secret_key import development_secret_key  # only when no SECRET_KEY is given

    # One key per checkout, in an ignored file: shared by every process started here, known to nobody else.
    SECRET_KEY = development_secret_key(BASE_DIR / ".secret_key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=CORS_ALLOWED_ORIGINS)

# --- HTTPS: off by default, for local development over plain HTTP; production turns them on --------------
# (`manage.py check --deploy` then has nothing to say; README, "Production").
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Load balancers and the tests probe health over plain HTTP on the server's own port.
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)

# The web page loads only its own files and talks only to its own server (REST and WebSocket: the middleware
# adds ws:// and wss:// of the requested host to connect-src). The API docs, the browsable API and its login
# page carry inline scripts of their packages', so they go without.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/", "/api-auth/", "/docs", "/redoc"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "csp",
    "rest_framework",
    "rest_framework_simplejwt",
    # Outstanding refresh tokens, so that logout and deactivation can refuse them.
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "users",
    "groups",
    "chat",
    "ai_bridge",
    "records",
]

MIDDLEWARE = [
    "imserver.requestid.RequestIdMiddleware",
    "imserver.audit.AuditActorMiddleware",
    "imserver.middleware.ContractErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "imserver.middleware.ContentSecurityPolicyMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "imserver.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "imserver.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "imserver.asgi.application"
# The ASGI server `python -m imserver.server` runs (imserver/server.py): daphne, the design's server and what
# `make run` serves, or uvicorn (uvloop, httptools), which the production launcher runs: less CPU per request.
ASGI_SERVER = env.str("ASGI_SERVER", default="daphne")
if ASGI_SERVER not in ("daphne", "uvicorn"):
    raise ImproperlyConfigured(f"ASGI_SERVER must be daphne or uvicorn, not {ASGI_SERVER!r}")
# Threads a server process keeps for the sync code of HTTP requests (one runs one request at a time), so that
# a request need not start one; more requests at once still get their own.
ASGI_IDLE_THREADS = env.int("ASGI_IDLE_THREADS", default=32)
# Seconds a thread of a server process runs before Python offers the GIL to another (Python's default 0.005).
ASGI_SWITCH_INTERVAL = env.float("ASGI_SWITCH_INTERVAL", default=0.001)
# Freeze what a server process loaded at start out of the garbage collector's full passes (imserver.gcfreeze).
GC_FREEZE = env.bool("GC_FREEZE", default=True)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "imserver" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue up instead of failing with "database is locked" on the embedded database.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that the servers end-to-end tests start can share the test database.
    # One per test run, so that runs side by side do not share it.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("SQLITE_TEST_NAME", default=str(Path(tempfile.gettempdir()) / f"im-test-{os.getpid()}.sqlite3"))
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
    )
    # A pool of PostgreSQL connections per server process, shared by its threads: a request holds one while it
    # runs. Off, every thread that serves requests keeps a connection of its own (DB_CONN_MAX_AGE).
    if env.bool("DB_POOL", default=True):
        from imserver.dbpool import pool_returned, pool_unreachable  # psycopg is not loaded for SQLite

        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not
        DATABASES["default"]["OPTIONS"]["pool"] = {
            # Connections kept open while idle, and the most one process opens.
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
            # Seconds a request waits for a free connection before it fails (503 SERVICE_UNAVAILABLE).
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
            # Seconds the pool retries a failed connect before it gives up and the requests waiting for a
            # connection fail (503) rather than wait out DB_POOL_TIMEOUT; it connects again on the next demand.
            "reconnect_timeout": env.float("DB_POOL_RECONNECT_TIMEOUT", default=0.0),
            "reconnect_failed": pool_unreachable,
            "reset": pool_returned,
        }
        # Seconds after a connection came back to the pool during which it is lent again without a round trip to
        # check it (pgbouncer's server_check_delay); older ones are checked, and replaced when dead. A database
        # restarted within it fails the queries of the connections returned just before (503), once each.
        DB_POOL_CHECK_DELAY = env.float("DB_POOL_CHECK_DELAY", default=1.0)
    else:
        # Seconds a connection is reused (per thread) when the pool is off.
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# A client's send on the server's event loop, its statements on an async pool of each server process's own
# (imserver.asyncdb, chat.gate): PostgreSQL with Redis only; off, every send goes through Django's request cycle.
SEND_DIRECT = env.bool("SEND_DIRECT", default=True)
# (group, sender) pairs whose group and in-group role that path keeps per process between a sender's sends
# (chat.sendhints: checked by the send statement itself, never trusted); the oldest go first; 0: none kept.
SEND_HINTS_MAX = env.int("SEND_HINTS_MAX", default=20000)
# Connections kept open while idle, and the most one server process opens, in that pool.
DB_ASYNC_POOL_MIN_SIZE = env.int("DB_ASYNC_POOL_MIN_SIZE", default=2)
DB_ASYNC_POOL_MAX_SIZE = env.int("DB_ASYNC_POOL_MAX_SIZE", default=10)
# Seconds a send waits for a free connection of it before it fails (503), as with Django's pool.
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=10.0)
# Seconds it retries a failed connect before the waiting sends fail (503), as with Django's pool.
DB_POOL_RECONNECT_TIMEOUT = env.float("DB_POOL_RECONNECT_TIMEOUT", default=0.0)
# Runs of a statement on a connection of that pool before psycopg prepares it on the server (empty: never, as
# behind a pooler in transaction mode).
DB_ASYNC_PREPARE_THRESHOLD = env.int("DB_ASYNC_PREPARE_THRESHOLD", default=5) \
    if env.str("DB_ASYNC_PREPARE_THRESHOLD", default="5") else None
# PostgreSQL streaming replicas (hot standbys of DATABASE_URL), comma-separated: history reads go to them
# (imserver/dbrouter.py); none: every read goes to the primary.
DATABASE_REPLICA_URLS = env.list("DATABASE_REPLICA_URLS", default=[])
# Seconds a replica may lag behind the primary before reads skip it.
DATABASE_REPLICA_MAX_LAG = env.float("DATABASE_REPLICA_MAX_LAG", default=5.0)
# Seconds between two checks of each replica's health and lag, per server process (reads use the last result).
DATABASE_REPLICA_CHECK_INTERVAL = env.float("DATABASE_REPLICA_CHECK_INTERVAL", default=1.0)
if DATABASE_REPLICA_URLS and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL.")
for _number, _url in enumerate(DATABASE_REPLICA_URLS, start=1):
    # The primary's connection options and pool sizes, then the replica URL's own; Django's tests read the
    # primary under the replica's name.
    _replica = env.db_url_config(_url)
    _replica.update(CONN_MAX_AGE=DATABASES["default"]["CONN_MAX_AGE"], CONN_HEALTH_CHECKS=True,
                    OPTIONS={**DATABASES["default"]["OPTIONS"], **_replica.get("OPTIONS", {})},
                    TEST={"MIRROR": "default"})
    DATABASES[f"replica{_number}"] = _replica
DATABASE_ROUTERS = ["imserver.dbrouter.ReplicaRouter"] if DATABASE_REPLICA_URLS else []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Redis, channel layer, Celery ------------------------------------------------------------
# Redis Sentinel, for failover: "host:port" of each Sentinel, comma-separated. Set, the channel layer, the cache,
# the connection slots and the Celery broker use the master the Sentinels name (REDIS_URL then gives only the db
# number and the password).
REDIS_SENTINELS = env.list("REDIS_SENTINELS", default=[])
REDIS_SENTINEL_HOSTS = [(host, int(port)) for host, port in (entry.rsplit(":", 1) for entry in REDIS_SENTINELS)]
# The name the Sentinels monitor the master under (`sentinel monitor <name> ...` in their configuration).
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="im")
# The Sentinels' own password (their `requirepass`), if they have one; the master's is REDIS_URL's.
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
REDIS_URL = env.str("REDIS_URL", default="redis:///0" if REDIS_SENTINELS else "")
# Seconds a Redis call of the cache (send-rate counters), the connection slots, a Sentinel query or a batch of the
# channel layer's publishes may take.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=2.0)
REDIS_SENTINEL_KWARGS = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
                         **({"password": REDIS_SENTINEL_PASSWORD} if REDIS_SENTINEL_PASSWORD else {})}
# The master's db, username and password, as REDIS_URL gives them.
from redis.connection import parse_url as redis_parse_url

REDIS_MASTER_PARAMS = {key: value for key, value in redis_parse_url(REDIS_URL).items()
                       if key in ("db", "username", "password")} if REDIS_URL else {}

CHANNEL_LAYER_CAPACITY = env.int("CHANNEL_LAYER_CAPACITY", default=1000)
CHANNEL_LAYER_GROUP_EXPIRY = env.int("CHANNEL_LAYER_GROUP_EXPIRY", default=86400)
# "pubsub" (default) or "core": see the README's measurement; capacity and group expiry apply to "core".
CHANNEL_LAYER_BACKEND = env.str("CHANNEL_LAYER_BACKEND", default="pubsub")
# Prefix of the channel layer's Redis keys and channels, and of the connection slots (one per deployment).
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="im")
# Redis URLs the channel layer shards its groups and channels over, comma-separated, the same list in the same
# order on every process (README, "Capacity"); default REDIS_URL alone. With Sentinel: its one master.
CHANNEL_LAYER_HOSTS = env.list("CHANNEL_LAYER_HOSTS", default=[REDIS_URL] if REDIS_URL else [])
if REDIS_SENTINELS:
    CHANNEL_LAYER_HOSTS = [{"sentinels": REDIS_SENTINEL_HOSTS, "master_name": REDIS_SENTINEL_MASTER,
                            "sentinel_kwargs": REDIS_SENTINEL_KWARGS, "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
                            **REDIS_MASTER_PARAMS}]
if REDIS_URL:
    if CHANNEL_LAYER_BACKEND == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "imserver.channel_layer.BatchedPubSubChannelLayer",  # channels_redis pub/sub, batched
                "CONFIG": {"hosts": CHANNEL_LAYER_HOSTS, "prefix": CHANNEL_LAYER_PREFIX},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": CHANNEL_LAYER_HOSTS,
                    "capacity": CHANNEL_LAYER_CAPACITY,
                    "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY,
                    "prefix": CHANNEL_LAYER_PREFIX,
                },
            }
        }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_LAYER_CAPACITY, "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY},
        }
    }

# The cache holds the send-rate counters: shared through Redis when there is one (and Sentinel: imserver/cache.py).
CACHES = {
    "default": {"BACKEND": "imserver.cache.RedisCache", "LOCATION": REDIS_URL,
                "KEY_PREFIX": "imcache", "OPTIONS": {"socket_timeout": REDIS_SOCKET_TIMEOUT,
                                                     "socket_connect_timeout": REDIS_SOCKET_TIMEOUT}}
    if REDIS_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

# With Sentinel, kombu's sentinel:// transport: one URL per Sentinel, with the master's db and password.
_broker_auth = f":{REDIS_MASTER_PARAMS['password']}@" if REDIS_MASTER_PARAMS.get("password") else ""
_sentinel_broker = ";".join(f"sentinel://{_broker_auth}{host}:{port}/{REDIS_MASTER_PARAMS.get('db', 0)}"
                            for host, port in REDIS_SENTINEL_HOSTS)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_sentinel_broker or REDIS_URL)
# No broker means the embedded system: the AI bridge's tasks (replies, escalation webhooks) run on
# AI_LOCAL_WORKERS threads of the process that scheduled them, not on Celery workers.
AI_TASKS_IN_PROCESS = env.bool("AI_TASKS_IN_PROCESS", default=not CELERY_BROKER_URL)
# Celery's own: with no broker, a task that reaches Celery anyway runs at once instead of waiting for one.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=AI_TASKS_IN_PROCESS)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=3.0)
# Task results: none are kept (a task's outcome is its AI record); set it (sentinel:// too) for tools that want them.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
# What kombu's sentinel:// transport needs, for the broker (in CELERY_BROKER_TRANSPORT_OPTIONS) and the results.
CELERY_SENTINEL_OPTIONS = {"master_name": REDIS_SENTINEL_MASTER, "sentinel_kwargs": REDIS_SENTINEL_KWARGS} \
    if REDIS_SENTINELS else {}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_SENTINEL_OPTIONS

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "users.authentication.CachedUserJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "imserver.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "imserver.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "USER_ID_FIELD": "user_id",
    "USER_ID_CLAIM": "user_id",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "UPDATE_LAST_LOGIN": False,
}
# Seconds a server process keeps the user of an access token instead of reading it on every request (0: off). A
# change of the user drops it from every process at once through Redis (users.usercache); without Redis, off. The
# bound for a process whose subscription died silently (it stops acknowledging; the change's author is warned).
AUTH_USER_CACHE_SECONDS = env.float("AUTH_USER_CACHE_SECONDS", default=10.0)
# Access tokens a server process remembers having parsed (users.authentication.ParsedTokens; 0: off): a repeat
# has its signature and expiry verified again, not its JSON parsed. About 1 KB each.
AUTH_TOKEN_CACHE_SIZE = env.int("AUTH_TOKEN_CACHE_SIZE", default=10000)
# Seconds between the checks that the cache's Redis subscription is alive (a lost one turns the cache off), and
# the longest pause between attempts to subscribe again.
AUTH_USER_CACHE_HEALTH_SECONDS = env.float("AUTH_USER_CACHE_HEALTH_SECONDS", default=5.0)
# Seconds a user change waits for every listening process to confirm it dropped the user.
AUTH_USER_CACHE_ACK_SECONDS = env.float("AUTH_USER_CACHE_ACK_SECONDS", default=1.0)

SPECTACULAR_SETTINGS = {
    "TITLE": "Care-team IM server",
    "DESCRIPTION": "Users, groups, messages with a gapless per-group sequence, WebSocket push, and an AI bridge.\n\n"
                   "The WebSocket (`/ws/{user_id}?token=<access token>`), its frames and close codes are described "
                   "by the AsyncAPI 3 document [/api/asyncapi.yaml](/api/asyncapi.yaml).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The contract is JSON in and out; the form parsers are there for the browsable API only.
    "PARSER_WHITELIST": ["imserver.parsers.JSONParser"],
    "RENDERER_WHITELIST": ["rest_framework.renderers.JSONRenderer"],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "users.models.Role.choices",
        "MsgTypeEnum": "chat.models.MsgType.choices",
        "SendMsgTypeEnum": ["TEXT", "IMAGE"],
        "AiModeEnum": "groups.models.AIMode.choices",
        "AiRecordStatusEnum": "ai_bridge.models.Status.choices",
        "ExportFormatEnum": ["json", "fhir"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "imserver.schema.contract_paths",
    ],
}

# --- IM limits -------------------------------------------------------------------------------
IM_MAX_MESSAGE_CHARS = env.int("IM_MAX_MESSAGE_CHARS", default=4000)
IM_MAX_DESCRIPTION_CHARS = env.int("IM_MAX_DESCRIPTION_CHARS", default=2000)
IM_PAGE_SIZE_DEFAULT = env.int("IM_PAGE_SIZE_DEFAULT", default=20)
IM_PAGE_SIZE_MAX = env.int("IM_PAGE_SIZE_MAX", default=100)
IM_SYNC_LIMIT_DEFAULT = env.int("IM_SYNC_LIMIT_DEFAULT", default=100)
IM_SYNC_LIMIT_MAX = env.int("IM_SYNC_LIMIT_MAX", default=500)
# Sends per user, over HTTP and WebSocket together (429 / error frame RATE_LIMITED), "<count>/<s|min|hour>".
IM_SEND_RATE = env.str("IM_SEND_RATE", default="120/min")
# Password logins per username and per client address (429 RATE_LIMITED with Retry-After).
IM_LOGIN_RATE_PER_USERNAME = env.str("IM_LOGIN_RATE_PER_USERNAME", default="10/min")
IM_LOGIN_RATE_PER_ADDRESS = env.str("IM_LOGIN_RATE_PER_ADDRESS", default="60/min")
# Deepest nesting of arrays and objects in a JSON body or frame (deeper: 400 / an error frame).
IM_JSON_MAX_DEPTH = env.int("IM_JSON_MAX_DEPTH", default=32)
# Largest request body Django reads, in bytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("IM_MAX_REQUEST_BYTES", default=256 * 1024)

# --- Records: read state, audit, export, encryption ------------------------------------------------
# Seconds between two writes of one connection's read watermark for one group (the reads between are coalesced).
IM_READ_COALESCE_SECONDS = env.float("IM_READ_COALESCE_SECONDS", default=0.5)
# Rows an export reads from the database at a time (its memory is bounded by this, not by the group's size).
IM_EXPORT_CHUNK_SIZE = env.int("IM_EXPORT_CHUNK_SIZE", default=2000)
# Fernet keys, comma-separated: message content is stored encrypted under the first; all decrypt. Empty: plain text.
IM_ENCRYPTION_KEYS = env.list("IM_ENCRYPTION_KEYS", default=[])

# --- Static files, i18n ----------------------------------------------------------------------
STATIC_URL = "static/"
# Set STATIC_ROOT to run `collectstatic` for a front proxy; unset, the files are served from the apps.
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
# Static files (admin, the bundled Swagger UI and ReDoc) are served by the app itself through WhiteNoise,
# from the apps' folders unless `collectstatic` has been run.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# JSON lines (one object a record, with the request id that follows a message into Celery), or plain text.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "imserver.requestid.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Request lines carry no bodies or query strings; httpx's would name the AI service's URL only.
        "httpx": {"level": "WARNING"},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Bearer token a Prometheus scraper sends to /metrics (staff may always read it); empty: staff only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Seconds each readiness check may take.
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=2.0)

# --- WebSocket limits --------------------------------------------------------------------------
# Largest text frame the consumer accepts, in bytes.
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=64 * 1024)
# Frames a connection may send per WS_RATE_INTERVAL seconds before it gets RATE_LIMITED errors.
WS_RATE_MESSAGES = env.int("WS_RATE_MESSAGES", default=30)
WS_RATE_INTERVAL = env.float("WS_RATE_INTERVAL", default=10.0)
# Seconds a connection holds a push that came before an earlier seq did, waiting for the earlier one's push,
# before it reads the missing messages from the database (pushes always leave in seq order).
WS_PUSH_REORDER_WAIT = env.float("WS_PUSH_REORDER_WAIT", default=0.5)
# Seconds between attempts to read a process's group pushes while the channel layer cannot be read (chat.fanout).
WS_FANOUT_RECEIVE_RETRY = env.float("WS_FANOUT_RECEIVE_RETRY", default=0.5)
# Open WebSocket connections one user may hold, across all server processes (more: closed with 4429).
WS_MAX_CONNECTIONS_PER_USER = env.int("WS_MAX_CONNECTIONS_PER_USER", default=20)
# Seconds a connection's slot outlives its process when that dies without closing it (slots are renewed
# while the connection lives, every third of this).
WS_CONNECTION_SLOT_TTL = env.int("WS_CONNECTION_SLOT_TTL", default=60)
# The server's pings: the interval, and how long a silent client is kept (passed by `make run`).
WS_PING_INTERVAL = env.int("WS_PING_INTERVAL", default=20)
WS_PING_TIMEOUT = env.int("WS_PING_TIMEOUT", default=30)
# Bytes of one incoming WebSocket message past which the server closes the connection (1009), before the consumer's
# WS_MAX_FRAME_BYTES answers a smaller oversized frame with an error; the launcher's --websocket-max-message-size.
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=1024 * 1024)
# Bytes of pushes a connection holds while its client reads too slowly (imserver/server.py), or while its handshake
# finishes (chat.consumers); past it, closed with 4008.
WS_MAX_QUEUED_BYTES = env.int("WS_MAX_QUEUED_BYTES", default=1024 * 1024)
# Seconds a client closed by the server (4008, 1012) has to take the close frame before it is dropped.
WS_CLOSE_TIMEOUT = env.float("WS_CLOSE_TIMEOUT", default=1.0)
# Seconds an idle kept-alive HTTP connection stays open (uvicorn's engine; daphne's keeps it until the client goes).
HTTP_KEEPALIVE_TIMEOUT = env.int("HTTP_KEEPALIVE_TIMEOUT", default=75)
# Seconds a stopping server (SIGTERM) keeps a kept-alive HTTP connection on which nothing comes, within
# WS_SHUTDOWN_GRACE: a request that does come is answered with Connection: close (one already on its way would
# otherwise meet a reset connection).
HTTP_SHUTDOWN_IDLE_TIMEOUT = env.float("HTTP_SHUTDOWN_IDLE_TIMEOUT", default=1.0)
# Seconds a stopping server (SIGTERM) waits for its WebSockets, closed with 1012, before it exits anyway.
WS_SHUTDOWN_GRACE = env.float("WS_SHUTDOWN_GRACE", default=5.0)
# Seconds past WS_SHUTDOWN_GRACE that the server's own teardown (cancelling what is left, closing the pools) may take
# before the process leaves anyway: a stopping server is gone within WS_SHUTDOWN_GRACE + WS_SHUTDOWN_EXIT_MARGIN.
WS_SHUTDOWN_EXIT_MARGIN = env.float("WS_SHUTDOWN_EXIT_MARGIN", default=2.0)
# Of that margin, how long the sends whose statements were cancelled at the grace's end have to answer their 503.
WS_SHUTDOWN_CANCEL_WAIT = env.float("WS_SHUTDOWN_CANCEL_WAIT", default=0.5)

# --- AI bridge ---------------------------------------------------------------------------------
# The embedded default is the bundled reference AI service that `make run` starts on port 8001.
AI_SERVICE_URL = env.str("AI_SERVICE_URL", default="http://127.0.0.1:8001/reply")
AI_SERVICE_PROTOCOL = env.str("AI_SERVICE_PROTOCOL", default="simple")  # "simple" or "openai"
AI_SERVICE_API_KEY = env.str("AI_SERVICE_API_KEY", default="reference-ai-key")
AI_MODEL = env.str("AI_MODEL", default="reference")
AI_SERVICE_TIMEOUT = env.float("AI_SERVICE_TIMEOUT", default=30.0)
AI_HISTORY_MESSAGES = env.int("AI_HISTORY_MESSAGES", default=20)
AI_MAX_RETRIES = env.int("AI_MAX_RETRIES", default=3)
AI_RETRY_BACKOFF = env.float("AI_RETRY_BACKOFF", default=1.0)  # first wait, doubled each retry, with jitter
AI_RETRY_BACKOFF_MAX = env.float("AI_RETRY_BACKOFF_MAX", default=30.0)
AI_MAX_REPLY_CHARS = env.int("AI_MAX_REPLY_CHARS", default=IM_MAX_MESSAGE_CHARS)
AI_ASSISTANT_USERNAME = env.str("AI_ASSISTANT_USERNAME", default="ai_assistant")
AI_SYSTEM_PROMPT = env.str("AI_SYSTEM_PROMPT", default="You are a care team's assistant. Answer the patient kindly.")
# A record still PROCESSING after this many seconds is dispatched again by the sweep.
AI_STALE_AFTER = env.int(
    "AI_STALE_AFTER",
    default=int((AI_SERVICE_TIMEOUT + AI_RETRY_BACKOFF_MAX) * (AI_MAX_RETRIES + 1)) + 60,
)
AI_SWEEP_INTERVAL = env.int("AI_SWEEP_INTERVAL", default=60)
# Longest error text or raw answer kept on an AI record.
AI_RECORD_TEXT_MAX = env.int("AI_RECORD_TEXT_MAX", default=2000)
AI_SWEEP_BATCH = env.int("AI_SWEEP_BATCH", default=1000)  # records dispatched again per sweep, at most
# Most calls to the AI service one record ever gets, whatever retries, redeliveries and sweeps happen.
AI_MAX_ATTEMPTS_TOTAL = env.int("AI_MAX_ATTEMPTS_TOTAL", default=2 * (AI_MAX_RETRIES + 1))
# Largest answer read from the AI service, in bytes (more: the record fails, nothing of it is stored whole).
AI_MAX_RESPONSE_BYTES = env.int("AI_MAX_RESPONSE_BYTES", default=256 * 1024)
# Longest wait a 429's Retry-After may ask for before the next attempt, in seconds.
AI_RETRY_AFTER_MAX = env.float("AI_RETRY_AFTER_MAX", default=60.0)
# Ask the AI service to stream its answer (server-sent events); a service that answers JSON is read as before.
AI_SERVICE_STREAM = env.bool("AI_SERVICE_STREAM", default=True)
# At most one `ai_delta` frame per record per this many milliseconds: a fast model does not cost a frame a token.
AI_STREAM_FRAME_MS = env.int("AI_STREAM_FRAME_MS", default=100)
# Seconds the end of a streamed answer's body may take after its last event, for its connection to be kept.
AI_STREAM_DRAIN_SECONDS = env.float("AI_STREAM_DRAIN_SECONDS", default=1.0)
# Patient messages of one group within this many seconds of each other get one answer, to the last.
AI_COALESCE_SECONDS = env.float("AI_COALESCE_SECONDS", default=2.0)
# Seconds a review-mode draft waits for a doctor before it escalates.
AI_REVIEW_TIMEOUT = env.int("AI_REVIEW_TIMEOUT", default=600)
# Seconds a server or worker keeps the triage rules it read before reading them again.
AI_TRIAGE_CACHE_SECONDS = env.float("AI_TRIAGE_CACHE_SECONDS", default=10.0)
# What the AI assistant tells a patient whose message raised a red flag, per language of the rule.
AI_ESCALATION_NOTICES = {
    "en": env.str("AI_ESCALATION_NOTICE_EN", default=(
        "A doctor of your care team has been alerted and will answer you here as soon as possible. "
        "If you are in danger now, call your local emergency number.")),
    "zh": env.str("AI_ESCALATION_NOTICE_ZH", default="已通知您的医护团队医生，医生会尽快在这里回复您。如果您现在有危险，请立即拨打急救电话。"),
}
# Paging outside the chat: a signed POST per escalation (empty: none), HMAC-SHA256 of the body under the secret.
ESCALATION_WEBHOOK_URL = env.str("ESCALATION_WEBHOOK_URL", default="")
ESCALATION_WEBHOOK_SECRET = env.str("ESCALATION_WEBHOOK_SECRET", default="")
ESCALATION_WEBHOOK_TIMEOUT = env.float("ESCALATION_WEBHOOK_TIMEOUT", default=5.0)
ESCALATION_WEBHOOK_MAX_ATTEMPTS = env.int("ESCALATION_WEBHOOK_MAX_ATTEMPTS", default=6)
AI_HTTP_MAX_CONNECTIONS = env.int("AI_HTTP_MAX_CONNECTIONS", default=50)  # per process, to the AI service
# Threads running AI calls in-process when there is no broker (the embedded system).
AI_LOCAL_WORKERS = env.int("AI_LOCAL_WORKERS", default=4)

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_SENTINEL_OPTIONS,
    # Longer than a task can take with all its retries, so a slow task is not handed out twice.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=AI_STALE_AFTER + 60),
    # How often a worker looks for tasks whose worker died (unacknowledged past the visibility timeout).
    "unacked_restore_interval": env.int("CELERY_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 1,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BEAT_SCHEDULE = {
    "ai-records-sweep": {"task": "ai_bridge.tasks.ai_records_sweep", "schedule": float(AI_SWEEP_INTERVAL)},
}
