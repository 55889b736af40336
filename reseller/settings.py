"""Django settings for reseller: every value read from the environment here, in one place."""

from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# One switch: "demo" (the default: `make run`, tests) or "production" (README, Production).
DJANGO_ENV = env("DJANGO_ENV", default="demo")
if DJANGO_ENV not in ("demo", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'demo' or 'production', not {DJANGO_ENV!r}.")
PRODUCTION = DJANGO_ENV == "production"


def _required(name: str) -> str:
    """A variable production cannot run without: refuse to start, saying which and why."""
    value = env(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"DJANGO_ENV=production needs {name}; see README, Production. Refusing to start.")
    return value


# The storefront's public address: Stripe and Crypto Pay send buyers back to it, receipts link
# to it, and in production it is the CSRF-trusted origin.
SITE_URL = (_required("SITE_URL") if PRODUCTION
            else env("SITE_URL", default="http://127.0.0.1:8000"))

if PRODUCTION:
    SECRET_KEY = _required("SECRET_KEY")
    DEBUG = False
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[]) or [_required("ALLOWED_HOSTS")]
else:
    # Demo only: a public key is no secret, so production refuses to run without its own.
    SECRET_KEY = env("SECRET_KEY", default="dev-insecure-change-me")
    DEBUG = env.bool("DEBUG", default=False)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
_site = urlsplit(SITE_URL)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[]) + (
    [f"{_site.scheme}://{_site.netloc}"] if PRODUCTION else [])

# --- Production security (HTTPS behind a TLS-terminating proxy) ----------------------------
if PRODUCTION:
    # The proxy sets X-Forwarded-Proto; only trust it behind one (README, Production).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # The load balancer's health check speaks plain HTTP to the web process.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Content-Security-Policy ---------------------------------------------------------------
# django-csp on every page, the storefront's and the admin's: scripts and styles only from our
# own static files, never inline, so injected markup cannot run. data: images are the pay
# page's QR code. Every form posts to ourselves; payment pages are reached by plain links.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Where browsers report what the policy blocked (e.g. Sentry's security endpoint). Not named
# CSP_*: django-csp 4 takes module-level CSP_ names for its old settings and refuses to start.
if _csp_report_uri := env("CSP_REPORT_URI", default=""):
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["report-uri"] = [_csp_report_uri]

# --- Admin protection ----------------------------------------------------------------------
# django-axes counts failed logins per (username, client IP) and refuses that pair, even with
# the right password, for AXES_COOLOFF_TIME after AXES_FAILURE_LIMIT failures. Ten leaves room
# for a few typos and still allows an attacker only ~480 guesses a day from one address, and
# the pair (not the user alone) keeps a stranger from locking the operator out. The 429 page
# says when to try again; `manage.py axes_reset_username <name>` lifts a lockout early.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out pair never reaches the password
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=30) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no version banner from every manage.py command and worker
AXES_LOCKOUT_CALLABLE = "reseller.admin_site.lockout_response"  # 429, says how long to wait
# Behind the TLS proxy REMOTE_ADDR is the proxy: with TRUSTED_PROXY_COUNT set (see Caches) the
# client is the entry our proxy appended to X-Forwarded-For; without, the header is ignored.
AXES_CLIENT_IP_CALLABLE = "reseller.admin_site.login_client_ip"
# django-otp: staff may add a TOTP authenticator (`manage.py admin_totp <username>`); whoever has
# one must give its code at the admin login. In production every superuser must have one.
ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS = PRODUCTION or env.bool(
    "ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS", default=False)
OTP_TOTP_ISSUER = env("SHOP_NAME", default="Stars Reseller")

INSTALLED_APPS = [
    # Django's admin with our login (password, then the TOTP code for staff who have one).
    "reseller.apps.ResellerAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    # The admin_totp command.
    "reseller",
    # Before django_q: orders' `qcluster` command (django-q2's cluster plus the recovery
    # loop, orders/management/commands/qcluster.py) takes the name over.
    "orders",
    "django_q",
    "shop",
    "bots",
    "stock",
    # The partner API (/api/v1/), above orders: it places orders, orders never import it.
    "partners",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself (compressed, hashed names in production).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before CommonMiddleware (Django's i18n docs): picks the buyer's language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: marks request.user verified when its session passed a TOTP code.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Log lines of a request about one order carry its reference (reseller/logging.py).
    "reseller.logging.OrderLogContextMiddleware",
    # Last (django-axes' docs): turns a lockout flagged during the login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# BENCH_URLCONF: the benchmarks under bench/ serve the shop's URLs plus their same-run
# reference views (bench/urls.py); never set in production.
ROOT_URLCONF = env("BENCH_URLCONF", default="reseller.urls")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "reseller.wsgi.application"

# SQLite is the embedded default. WAL + IMMEDIATE transactions + a busy timeout keep
# concurrent writers (web, django-q2 workers) from failing with "database is locked".
SQLITE_PATH = env("SQLITE_PATH", default=str(BASE_DIR / "var" / "db.sqlite3"))
DATABASE_URL = (_required("DATABASE_URL") if PRODUCTION
                else env("DATABASE_URL", default="") or f"sqlite:///{SQLITE_PATH}")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests that run a real django-q2 cluster need a file both processes can open.
    DATABASES["default"]["TEST"] = {
        "NAME": env("SQLITE_TEST_PATH", default=str(BASE_DIR / "var" / "test_db.sqlite3"))
    }
    # A fresh clone has no var/ yet: any manage.py command or a plain `pytest` must work there.
    for _sqlite_file in (DATABASES["default"]["NAME"], DATABASES["default"]["TEST"]["NAME"]):
        if str(_sqlite_file) != ":memory:":
            Path(_sqlite_file).parent.mkdir(parents=True, exist_ok=True)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections: each thread of a web worker (and the bot's and the cluster's threads,
# which call close_old_connections around their work) keeps its connection for this long
# instead of opening one per request: connecting cost about as much as the catalog's queries,
# and closing SQLite's last connection checkpoints the WAL (issue #11). Connections are
# per thread, so a gthread worker holds at most `threads` of them. 0: one per request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# A kept connection is checked once at the start of each request, so a database restart or a
# dropped connection costs a reconnect, not an error page.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Buyer-facing languages. LocaleMiddleware takes the switcher's cookie, else Accept-Language,
# else English. Catalogues: each app's locale/ (shop, orders, bots) and locale/ for templates/.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The switcher's choice outlives the browser session; Lax as for the session cookie.
LANGUAGE_COOKIE_AGE = 365 * 24 * 60 * 60
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
if not PRODUCTION:
    # The demo serves static files straight from the app folders (no collectstatic step).
    WHITENOISE_USE_FINDERS = True
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Production serves what `collectstatic` wrote: compressed, with content-hashed names.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
                    if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Caches -------------------------------------------------------------------------------
# One cache every process shares (rate limits count across gunicorn workers, the bot and the
# cluster): Redis when REDIS_URL is set, else a table in the database (`createcachetable`).
if REDIS_URL := env("REDIS_URL", default=""):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL, "KEY_PREFIX": "reseller-cache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "django_cache"}}
# Per process, for what every process can rebuild on its own and must not cost a round trip:
# the storefront's rendered catalog fragments (shop.selectors.catalog_current).
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                   "LOCATION": "reseller-local", "OPTIONS": {"MAX_ENTRIES": 1000}}
# How long a process reuses what it read of the catalog (product, packages, supplier tiers)
# for the storefront's pages before reading it again; a save in the same process drops it at
# once. Orders are always priced afresh from the database (orders.services.order_create).
CATALOG_CACHE_SECONDS = env.float("CATALOG_CACHE_SECONDS", default=2.0)
# Sessions: with Redis, read from it and written through to the database (which stays the
# record: buyers' orders are tied to their session, orders.services.buyer_session_hash), so
# only requests that change the session touch the database. Without Redis the shared cache is
# the database itself, and plain database sessions cost less.
SESSION_ENGINE = ("django.contrib.sessions.backends.cached_db" if REDIS_URL
                  else "django.contrib.sessions.backends.db")

# Every process logs to stderr: plain lines in the demo, one JSON object per line in production.
# On every line: known secrets redacted, and `order` (its reference) while an order is handled
# (reseller/logging.py; web, bot and tasks set it).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "order": {"()": "reseller.logging.OrderContextFilter"},
        "redact_secrets": {"()": "reseller.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "reseller.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "formatter": "json" if PRODUCTION else "plain",
                             "filters": ["order", "redact_secrets"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # The stripe library logs every API call at INFO.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},
        # httpx logs request URLs, and Bot API URLs contain the bot token.
        "httpx": {"level": "WARNING"},
    },
}

# --- Error reporting ---------------------------------------------------------------------
# Sentry when SENTRY_DSN is set: no personal data, and events pass the same redaction as logs.
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk

    from reseller.logging import sentry_before_send

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=DJANGO_ENV,
        send_default_pii=False,
        before_send=sentry_before_send,
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# --- django-q2 -------------------------------------------------------------------------
# ORM broker by default; Redis when REDIS_URL is set. Our order tables, not the queue, know
# what remains to be done (see orders.services.orders_sweep), so a lost task is only a delay.
Q_CLUSTER = {
    "name": env("Q_CLUSTER_NAME_PREFIX", default="reseller"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=240),
    # retry must exceed timeout, or django-q2 re-runs tasks that are still running.
    "retry": env.int("Q_RETRY", default=300),
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.2),
    "save_limit": 1000,
    # A worker is replaced after this many tasks (django-q2's default); bench/soak.py raises
    # it to see growth that recycling would hide.
    "recycle": env.int("Q_RECYCLE", default=500),
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
Q_SYNC = env.bool("Q_SYNC", default=False)
if Q_SYNC:
    Q_CLUSTER["sync"] = True

# --- Supplier ----------------------------------------------------------------------------
SUPPLIER_CODE = env("SUPPLIER_CODE", default="sandbox")
SUPPLIER_BASE_URL = env("SUPPLIER_BASE_URL", default="http://127.0.0.1:8001")
SUPPLIER_API_KEY = env("SUPPLIER_API_KEY", default="sandbox-key")
SUPPLIER_TIMEOUT = env.float("SUPPLIER_TIMEOUT", default=10.0)
# Requests per second the supplier allows us, counted across every process in the shared cache
# (orders/suppliers/throttle.py); a 429's Retry-After pauses every caller. 0: no limit.
SUPPLIER_RATE_PER_SECOND = env.float("SUPPLIER_RATE_PER_SECOND", default=20.0)
# Per supplier code, for more than one supplier: SUPPLIER_RATE_LIMITS=sandbox=20,other=5.
SUPPLIER_RATE_LIMITS = {code: float(rate) for code, rate in
                        env.dict("SUPPLIER_RATE_LIMITS", default={}).items()}
# How long an order held for the supplier's balance or credentials waits before the sweeper
# tries it again; a balance reading that covers it resumes it sooner (stock.services).
SUPPLIER_HOLD_RECHECK_SECONDS = env.int("SUPPLIER_HOLD_RECHECK_SECONDS", default=300)
# --- Money and stock (stock/) -------------------------------------------------------------
# The supplier balance is read on this schedule (and at cluster start) and kept this long.
SUPPLIER_BALANCE_CHECK_MINUTES = env.int("SUPPLIER_BALANCE_CHECK_MINUTES", default=5)
SUPPLIER_BALANCE_HISTORY_DAYS = env.int("SUPPLIER_BALANCE_HISTORY_DAYS", default=30)
# "Hours of sales left" divides the balance by the supplier cost of the orders delivered in
# this many past hours, per hour.
SUPPLIER_RATE_WINDOW_HOURS = env.int("SUPPLIER_RATE_WINDOW_HOURS", default=24)
# The low-balance threshold a supplier starts with (Managers change it in the admin). The alert
# fires once when the balance falls under it and re-arms ("balance restored") only once the
# balance is back at or above the threshold plus this percentage of it, so a refund trickling
# back does not make it flap.
SUPPLIER_LOW_BALANCE = Decimal(env("SUPPLIER_LOW_BALANCE", default="50.00"))
SUPPLIER_LOW_BALANCE_REARM_PERCENT = Decimal(env("SUPPLIER_LOW_BALANCE_REARM_PERCENT",
                                                 default="10"))
# The operators' Telegram chat (a numeric ID, or @channel) for alerts, sent with the bot's
# token; no alerts to Telegram while it or TELEGRAM_BOT_TOKEN is unset.
OPERATORS_CHAT_ID = env("OPERATORS_CHAT_ID", default="")

# --- Rate limits ---------------------------------------------------------------------------
# Recipient lookups (storefront, bot, later the API) are counted in CACHES, which every
# process shares: "N/minute, M/hour" per subject, each meaning "in any window that long";
# an empty value turns that limit off. Refused lookups count too. See reseller/ratelimits.py.
RECIPIENT_LOOKUP_RATE_PER_IP = env("RECIPIENT_LOOKUP_RATE_PER_IP", default="30/minute, 300/hour")
RECIPIENT_LOOKUP_RATE_PER_SESSION = env("RECIPIENT_LOOKUP_RATE_PER_SESSION",
                                        default="10/minute, 100/hour")
RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER = env("RECIPIENT_LOOKUP_RATE_PER_TELEGRAM_USER",
                                              default="10/minute, 100/hour")
# The supplier's answer to a buyer's lookup is reused for this long (seconds), so a flood of
# the same name does not spend the supplier's quota. Placing the top-up always asks afresh.
RECIPIENT_CACHE_SECONDS = env.int("RECIPIENT_CACHE_SECONDS", default=300)
RECIPIENT_NOT_FOUND_CACHE_SECONDS = env.int("RECIPIENT_NOT_FOUND_CACHE_SECONDS", default=60)
# How many proxies of ours append to X-Forwarded-For in front of the app (nginx alone: 1; a
# CDN then nginx: 2). 0 (the default) counts clients by REMOTE_ADDR and ignores the header,
# which any client can write. Set it too high and clients can pick their own address.
# Production runs behind its TLS proxy (README, Production), so there the default is 1: else
# every client would count as the proxy and one flood would lock everybody out.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1 if PRODUCTION else 0)
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache":
    # Past MAX_ENTRIES (Django's default: 300) the database cache deletes a third of its rows,
    # live counters included: a flood of fresh addresses would wipe the limits it is counted by.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault(
        "MAX_ENTRIES", env.int("CACHE_MAX_ENTRIES", default=200_000))

# --- Orders ------------------------------------------------------------------------------
ORDER_PAYMENT_WINDOW_MINUTES = env.int("ORDER_PAYMENT_WINDOW_MINUTES", default=30)
# How long a refund may sit in refund_pending before the sweeper enqueues it again.
FULFILMENT_STALL_SECONDS = env.int("FULFILMENT_STALL_SECONDS", default=120)
# A worker holds a paid order by a lease it renews every third of this while it makes
# progress: a killed or stalled worker loses the order within this many seconds.
FULFILMENT_LEASE_SECONDS = env.float("FULFILMENT_LEASE_SECONDS", default=5.0)
# The renewing thread; off only in unit tests, whose database transaction it would wait on.
FULFILMENT_LEASE_HEARTBEAT = env.bool("FULFILMENT_LEASE_HEARTBEAT", default=True)
# An order the recovery sweep enqueued is not enqueued again for this long while its task waits.
FULFILMENT_DISPATCH_SECONDS = env.float("FULFILMENT_DISPATCH_SECONDS", default=4.0)
# How often `manage.py qcluster`'s recovery loop looks for due orders nobody holds.
RECOVERY_TICK_SECONDS = env.float("RECOVERY_TICK_SECONDS", default=1.0)
# How long one fulfilment task polls the supplier before handing over to the recovery loop;
# short, so a stopping cluster waits for little (it lets running tasks finish).
FULFILMENT_POLL_BUDGET_SECONDS = env.float("FULFILMENT_POLL_BUDGET_SECONDS", default=10)
# Orders one cluster worker drives at once: its fulfilment task also claims other due orders
# (up to this many, each in its own thread) for FULFILMENT_CLAIM_SECONDS, so supplier calls
# overlap instead of queueing behind each other. Each holds a database connection while it
# runs: PostgreSQL needs clusters × Q_WORKERS × (this + 2) connections for fulfilment.
FULFILMENT_CONCURRENCY = env.int("FULFILMENT_CONCURRENCY", default=24)
FULFILMENT_CLAIM_SECONDS = env.float("FULFILMENT_CLAIM_SECONDS", default=5.0)
FULFILMENT_POLL_FIRST_DELAY = env.float("FULFILMENT_POLL_FIRST_DELAY", default=0.5)
# The longest an in-flight order waits for its next look (a poll, a lookup): so an order whose
# worker died is due again within seconds of the cluster's restart, whatever it was waiting for.
FULFILMENT_POLL_MAX_SECONDS = env.float("FULFILMENT_POLL_MAX_SECONDS", default=5.0)
# An order still not delivered after this long goes to review for an operator.
FULFILMENT_GIVE_UP_HOURS = env.int("FULFILMENT_GIVE_UP_HOURS", default=24)
# After an unknown outcome, how long a lookup that finds nothing must wait before we conclude
# the top-up was never placed (our own request may still be in flight): above the timeout.
FULFILMENT_UNKNOWN_GRACE_SECONDS = env.float(
    "FULFILMENT_UNKNOWN_GRACE_SECONDS", default=SUPPLIER_TIMEOUT + 5
)
SWEEP_EVERY_MINUTES = env.int("SWEEP_EVERY_MINUTES", default=1)
# The admin home's queue of paid orders not delivered after this many minutes.
CONSOLE_UNDELIVERED_MINUTES = env.int("CONSOLE_UNDELIVERED_MINUTES", default=10)

# --- TON payments ------------------------------------------------------------------------
# One wallet + a unique comment per invoice, read from toncenter v3 by payments_poll.
# Defaults point at the local fake (python -m fakes.toncenter); real URLs in the comments.
TON_NETWORK = env("TON_NETWORK", default="testnet")  # mainnet | testnet, checked against toncenter
TON_WALLET_ADDRESS = env("TON_WALLET_ADDRESS",  # user-friendly form; this is the fake's wallet
                         default="0QA2M1klAJscfjmPxKhBwjLTmCQWCecQ78pcA0Av1xT2ZjfF")
# real: https://toncenter.com/api/v3 or https://testnet.toncenter.com/api/v3
TON_API_URL = env("TON_API_URL", default="http://127.0.0.1:8002/api/v3")
TON_API_KEY = env("TON_API_KEY", default="")  # X-API-Key; without one toncenter allows 1 request/s
TON_API_TIMEOUT = env.float("TON_API_TIMEOUT", default=10.0)
TON_POLL_PAGE_SIZE = env.int("TON_POLL_PAGE_SIZE", default=100)
TON_POLL_MAX_PAGES = env.int("TON_POLL_MAX_PAGES", default=10)
# real: https://api.coingecko.com/api/v3/simple/price and https://tonapi.io/v2/rates;
# an empty URL turns that source off.
TON_RATE_COINGECKO_URL = env("TON_RATE_COINGECKO_URL",
                             default="http://127.0.0.1:8002/api/v3/simple/price")
TON_RATE_TONAPI_URL = env("TON_RATE_TONAPI_URL", default="http://127.0.0.1:8002/v2/rates")
TON_RATE_TIMEOUT = env.float("TON_RATE_TIMEOUT", default=3.0)
TON_RATE_CACHE_SECONDS = env.int("TON_RATE_CACHE_SECONDS", default=60)
TON_RATE_MAX_SPREAD_PERCENT = Decimal(env("TON_RATE_MAX_SPREAD_PERCENT", default="3"))

# --- Crypto Pay (@CryptoBot) -------------------------------------------------------------
# On when a token is set. The default URL is the local fake (python -m fakes.cryptopay);
# in production set CRYPTOPAY_BASE_URL= (empty) so CRYPTOPAY_NETWORK picks the official host
# (https://pay.crypt.bot or https://testnet-pay.crypt.bot; each network has its own tokens).
CRYPTOPAY_TOKEN = env("CRYPTOPAY_TOKEN", default="")
CRYPTOPAY_NETWORK = env("CRYPTOPAY_NETWORK", default="testnet")
CRYPTOPAY_BASE_URL = env("CRYPTOPAY_BASE_URL", default="http://127.0.0.1:8003")
CRYPTOPAY_TIMEOUT = env.float("CRYPTOPAY_TIMEOUT", default=10.0)
CRYPTOPAY_ACCEPTED_ASSETS = env.list("CRYPTOPAY_ACCEPTED_ASSETS", default=["USDT", "TON", "BTC"])
# Longer than Crypto Pay's 3-day webhook retries, so no genuine retry is refused.
CRYPTOPAY_WEBHOOK_MAX_AGE_SECONDS = env.int("CRYPTOPAY_WEBHOOK_MAX_AGE_SECONDS", default=302400)
# The "Return" button after payment; {public_id} and {reference} are filled in. Empty: the
# order's status page on SITE_URL.
CRYPTOPAY_RETURN_URL = env("CRYPTOPAY_RETURN_URL", default="")

# --- Stripe Checkout (cards) -------------------------------------------------------------
# On when a secret key is set. The default API base is the local fake (python -m fakes.stripe
# --port 8004); in production set STRIPE_API_BASE=https://api.stripe.com and the endpoint's
# signing secret from the dashboard.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="http://127.0.0.1:8004")
STRIPE_LIVEMODE = env.bool("STRIPE_LIVEMODE", default=STRIPE_SECRET_KEY.startswith("sk_live_"))
STRIPE_TIMEOUT = env.float("STRIPE_TIMEOUT", default=10.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)

# --- Payments ----------------------------------------------------------------------------
# Methods per channel and each method's fee (percent of the price) for the margin report.
PAYMENT_METHODS = {
    "sandbox": {
        "label": "Sandbox payment (test mode)",
        "fee_percent": Decimal(env("PAYMENT_SANDBOX_FEE_PERCENT", default="0")),
        "channels": ["web", "bot"],
        # Free "payments" that deliver real Stars: on only while the supplier is the sandbox.
        "enabled": env.bool("PAYMENT_SANDBOX_ENABLED", default=SUPPLIER_CODE == "sandbox"),
    },
    "ton": {
        "label": "TON",
        "fee_percent": Decimal(env("PAYMENT_TON_FEE_PERCENT", default="0")),
        "channels": ["web", "bot"],
        "enabled": env.bool("PAYMENT_TON_ENABLED", default=False),
        # The TON price is locked for this long (and never past the order's payment window).
        "quote_minutes": env.int("PAYMENT_TON_QUOTE_MINUTES", default=15),
    },
    "stripe": {
        "label": "Card (Stripe Checkout)",
        "fee_percent": Decimal(env("PAYMENT_STRIPE_FEE_PERCENT", default="2.5")),
        "channels": ["web", "bot"],
        "enabled": env.bool("PAYMENT_STRIPE_ENABLED", default=bool(STRIPE_SECRET_KEY)),
        "quote_minutes": env.int("PAYMENT_STRIPE_QUOTE_MINUTES", default=30),
    },
    "cryptopay": {
        "label": "Crypto (USDT, TON, BTC via Crypto Pay)",
        "fee_percent": Decimal(env("PAYMENT_CRYPTOPAY_FEE_PERCENT", default="3")),
        "channels": ["web", "bot"],
        "enabled": env.bool("PAYMENT_CRYPTOPAY_ENABLED", default=bool(CRYPTOPAY_TOKEN)),
        # Priced in fiat, so there is no rate to lock: the order's payment window caps it.
        "quote_minutes": env.int("PAYMENT_CRYPTOPAY_QUOTE_MINUTES", default=30),
    },
    "balance": {
        # Partner API orders are paid from the partner's prepaid balance (partners app).
        "label": "Partner balance",
        "fee_percent": Decimal(0),
        "channels": ["api"],
        "enabled": True,
    },
    "telegram": {
        # Telegram Payments (provider token) inside the bot. Off: Telegram's rules ask that digital
        # goods sold in bots be paid in Stars, so card buyers in the bot use the hosted checkout.
        "label": "Card in Telegram (Telegram Payments)",
        "fee_percent": Decimal(env("PAYMENT_TELEGRAM_FEE_PERCENT", default="0")),
        "channels": ["bot"],
        "enabled": env.bool("PAYMENT_TELEGRAM_ENABLED", default=False),
    },
}

# --- Telegram bot -----------------------------------------------------------------------
# The bot runs when a token is set: `manage.py runbot` (long polling) or the webhook view.
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN", default="")
# Bot API endpoint, e.g. a local Bot API server; python-telegram-bot appends the token.
TELEGRAM_API_BASE_URL = env("TELEGRAM_API_BASE_URL", default="https://api.telegram.org/bot")
TELEGRAM_API_FILE_URL = env("TELEGRAM_API_FILE_URL", default="https://api.telegram.org/file/bot")
# Off only to measure the bot without Telegram's limits (bench/bot_updates.py): Telegram
# answers a bot that floods it with 429s.
TELEGRAM_RATE_LIMIT = env.bool("TELEGRAM_RATE_LIMIT", default=True)
# Webhook mode: Telegram sends this in X-Telegram-Bot-Api-Secret-Token; the URL path carries
# a second secret so the endpoint is not guessable.
TELEGRAM_WEBHOOK_SECRET = env("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_WEBHOOK_PATH = env("TELEGRAM_WEBHOOK_PATH", default="")
TELEGRAM_WEBHOOK_URL = env("TELEGRAM_WEBHOOK_URL", default="")
# Telegram Payments (sendInvoice with a provider token); see PAYMENT_METHODS["telegram"].
TELEGRAM_PAYMENTS_PROVIDER_TOKEN = env("TELEGRAM_PAYMENTS_PROVIDER_TOKEN", default="")
# Telegram's flood limits are counted in Redis (REDIS_URL) under this prefix and the bot's ID,
# by every process that sends (bots/ratelimiter.py); without Redis, in each process alone.
TELEGRAM_RATE_LIMIT_KEY_PREFIX = env("TELEGRAM_RATE_LIMIT_KEY_PREFIX", default="tg-rate")

# Buyer notices on final order moves, by channel: a django-q2 task per channel that has one.
# Web orders get a receipt e-mail when the buyer gave an address (shop.tasks.order_receipt).
ORDER_NOTICE_TASKS = {"web": "shop.tasks.order_receipt"}
if TELEGRAM_BOT_TOKEN:
    ORDER_NOTICE_TASKS["bot"] = "bots.tasks.order_notify"

# --- Partner API (/api/v1/) ----------------------------------------------------------------
# Downstream resellers buy through the same API the shop buys from (partners app).
REST_FRAMEWORK = {
    # Only the partner API uses DRF; its views set their own authentication (API keys).
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "partners.api.errors.exception_handler",
    # Decimals as strings on the wire: never a float.
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Reseller partner API",
    "DESCRIPTION": "Buy Telegram Stars for your own buyers: validate a recipient, place a "
                   "top-up from your prepaid balance, follow it by polling or webhooks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No validator badge: Swagger UI would send our schema's URL to validator.swagger.io and
    # show its image, which the Content-Security-Policy blocks (and which we do not want).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
}
# Hits per key (and, before a key is known, per client address) in any window.
PARTNER_API_RATE = env("PARTNER_API_RATE", default="120/minute, 3000/hour")
PARTNER_API_RATE_PER_IP = env("PARTNER_API_RATE_PER_IP", default="300/minute")
# What a new partner's sandbox balance starts at, so a test key works at once.
PARTNER_SANDBOX_START_BALANCE = Decimal(env("PARTNER_SANDBOX_START_BALANCE", default="100.00"))
# How long after it was placed a sandbox top-up counts as completed.
PARTNER_SANDBOX_DELIVERY_SECONDS = env.float("PARTNER_SANDBOX_DELIVERY_SECONDS", default=1.0)
# Idempotency-Key records are kept at least this long (then purged by an hourly job).
PARTNER_IDEMPOTENCY_HOURS = env.int("PARTNER_IDEMPOTENCY_HOURS", default=48)
# Webhooks: attempts before giving up (backoff 10 s doubling, capped at an hour), the timeout
# of one POST, and the replay window receivers are told to enforce on the t= of
# X-Reseller-Signature.
PARTNER_WEBHOOK_MAX_ATTEMPTS = env.int("PARTNER_WEBHOOK_MAX_ATTEMPTS", default=10)
PARTNER_WEBHOOK_TIMEOUT = env.float("PARTNER_WEBHOOK_TIMEOUT", default=5.0)
PARTNER_WEBHOOK_TOLERANCE_SECONDS = env.int("PARTNER_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Webhook URLs that resolve to loopback, private, link-local or other non-public addresses are
# refused in production (a webhook must not become a way into our own network); the demo and
# the tests post to 127.0.0.1.
PARTNER_WEBHOOK_ALLOW_PRIVATE = env.bool("PARTNER_WEBHOOK_ALLOW_PRIVATE", default=not PRODUCTION)
# Tasks run on order status changes, per channel (as ORDER_NOTICE_TASKS): API orders tell
# their partner's webhook.
ORDER_STATUS_TASKS = {"api": "partners.tasks.order_status_changed"}

# --- E-mail ------------------------------------------------------------------------------
# Receipts are printed to the console (the demo) unless EMAIL_URL names an SMTP server,
# e.g. smtp+tls://user:password@smtp.example.com:587 (django-environ's email_url).
EMAIL_URL = env("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url_config(EMAIL_URL))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Stars Reseller <receipts@localhost>")
# Seconds; without a timeout a stuck SMTP server would hold a worker until the task times out.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Demo --------------------------------------------------------------------------------
SHOP_NAME = env("SHOP_NAME", default="Stars Reseller")
