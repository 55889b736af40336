"""DJANGO_ENV=production as the README sets it up, served by a real gunicorn on loopback.

One SQLite file stands in for PostgreSQL and the ORM broker for Redis; everything else is the
production configuration: required variables, `check --deploy`, collectstatic, gunicorn.conf.py,
and a TLS proxy played by sending X-Forwarded-Proto.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
HOST = "shop.example"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def production_env(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("production")
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SITE_URL": f"https://{HOST}",
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": f"sqlite:///{tmp / 'production.sqlite3'}",
        "STATIC_ROOT": str(tmp / "static"),
        # Values a developer's .env or the CI environment might hold must not leak in.
        "REDIS_URL": "", "SENTRY_DSN": "", "TELEGRAM_BOT_TOKEN": "", "DEBUG": "false",
        "WEB_CONCURRENCY": "1", "WEB_THREADS": "2",
    }
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


@pytest.fixture(scope="module")
def gunicorn(production_env) -> tuple[str, dict[str, str]]:
    """Set up as the README says (migrate, createcachetable, collectstatic), then serve."""
    env = production_env
    migrate = _manage(env, "migrate", "--no-input", "-v0")
    collect = _manage(env, "collectstatic", "--no-input", "-v0")
    for step in (migrate, collect):
        code, output = _finish(step)
        assert code == 0, output
    code, output = _finish(_manage(env, "createcachetable"))
    assert code == 0, output
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("gunicorn did not come up:\n" + (server.communicate()[0] or ""))
                time.sleep(0.1)
        yield base, env
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def test_check_deploy_passes_and_a_missing_secret_key_refuses_to_start(production_env):
    deploy = _manage(production_env, "check", "--deploy", "--fail-level", "WARNING")
    without_key = _manage({**production_env, "SECRET_KEY": ""}, "check")
    demo_setup = _manage(production_env, "demo_setup")
    code, output = _finish(deploy)
    assert code == 0, output
    code, output = _finish(without_key)
    assert code != 0
    assert "DJANGO_ENV=production needs SECRET_KEY; see README, Production. Refusing to start." in output
    # No default account outside the demo.
    code, output = _finish(demo_setup)
    assert code != 0 and "demo_setup is for the demo only" in output


def test_healthz_over_plain_http_for_the_load_balancer(gunicorn):
    base, _ = gunicorn
    # By IP address and without the proxy's header: no redirect, no host check.
    response = requests.get(f"{base}/healthz", timeout=5, allow_redirects=False)
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_https_through_the_proxy_hsts_secure_cookies_and_hashed_static_files(gunicorn):
    base, _ = gunicorn
    plain = requests.get(f"{base}/terms/", headers={"Host": HOST}, timeout=5, allow_redirects=False)
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{HOST}/terms/"

    proxied = {"Host": HOST, "X-Forwarded-Proto": "https"}
    page = requests.get(f"{base}/terms/", headers=proxied, timeout=5, allow_redirects=False)
    assert page.status_code == 200, page.text[:500]
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    cookies = page.raw.headers.getlist("Set-Cookie")
    assert cookies, "the storefront's forms set the CSRF cookie"
    assert all("; Secure" in cookie for cookie in cookies)

    # collectstatic's manifest: content-hashed names, cached for good, gzip beside them.
    stylesheet = re.search(r'/static/[\w/.-]+\.[0-9a-f]{12}\.css', page.text)
    assert stylesheet, page.text[:1000]
    asset = requests.get(f"{base}{stylesheet.group(0)}", headers=proxied, timeout=5)
    assert asset.status_code == 200 and "immutable" in asset.headers["Cache-Control"]
    assert "text/css" in asset.headers["Content-Type"]

    # A host not in ALLOWED_HOSTS is refused, proxy or not.
    other = requests.get(f"{base}/", headers={**proxied, "Host": "evil.example"}, timeout=5)
    assert other.status_code == 400
