"""gunicorn for the web process (README, Production); `make run` serves the demo with it too.

`gunicorn` in the project directory reads this file. The bot's webhook view runs inside these
workers and waits up to 25 s for its handlers (bots/views.py), hence threads and the 30 s timeout.
"""

import multiprocessing
import os

from gunicorn.glogging import Logger

from reseller.logging import JsonFormatter, RedactSecretsFilter

wsgi_app = "reseller.wsgi:application"

# Behind the TLS proxy on the same host by default; a container sets WEB_BIND=0.0.0.0:8000.
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000").split(",")
# The usual 2 × cores + 1, capped: every worker holds Django, database connections and the
# bot's runtime, and with the threads below 9 workers already serve 36 requests at once.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 9)))
# Threads so that a webhook update waiting on Telegram or the supplier does not hold the
# whole worker (gthread workers; the view blocks on the bot's event-loop thread). Not sync
# (a webhook would hold a whole worker for up to 25 s) and not gevent/eventlet (monkey-patching
# under psycopg, SQLite and the bot's own asyncio loop thread, for a shop whose pages are
# CPU-bound: issue #11 measured them at a few ms of Python each, not waiting on I/O). Each
# thread keeps its own database connection (CONN_MAX_AGE, reseller/settings.py): at most
# workers × threads connections per web host.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 4))
# Listen queue for bursts (Telegram delivers up to 40 updates at once per bot; runserver's 5
# reset connections under 150 concurrent requests, docs/benchmarks.md).
backlog = 2048
# A request running longer than this has its worker killed and restarted.
timeout = int(os.environ.get("WEB_TIMEOUT", 30))
# On SIGTERM, requests in flight get this long to finish.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", 30))
keepalive = 5
# Recycle workers now and then (memory growth, leaked connections); jitter keeps them apart.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", 2000))
max_requests_jitter = 200

# The proxy's address: gunicorn takes the scheme from X-Forwarded-Proto only from it. Django
# reads that header itself (SECURE_PROXY_SSL_HEADER) from anyone, so the web port must be
# reachable through the proxy alone, which overwrites the header (README, Production).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# gunicorn 25+'s runtime control socket lives at one path per user ($HOME/.gunicorn), which a
# second instance on the machine (the demo, a test) would fight over; we manage by signals.
control_socket_disable = True

# Logs on stdout (access) and stderr (errors), for the service manager to collect.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# No query strings (a search could carry an e-mail address); %(U)s is the path only.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'


class RedactingLogger(Logger):
    """gunicorn's own logs through the project's secret filter, as JSON in production.

    The webhook's path is a secret (docs/bot.md), and the access log prints every path.
    """

    def setup(self, cfg):
        super().setup(cfg)
        production = os.environ.get("DJANGO_ENV") == "production"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactSecretsFilter())
                if production:
                    handler.setFormatter(JsonFormatter())


logger_class = RedactingLogger
