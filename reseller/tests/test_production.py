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
OPERATOR_PASSWORD = secrets.token_urlsafe(16)


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
        # Two worker processes: rate limits must count across them (the shared cache).
        "WEB_CONCURRENCY": "2", "WEB_THREADS": "2",
        "SUPPLIER_BASE_URL": f"http://127.0.0.1:{_free_port()}", "SUPPLIER_API_KEY": "sandbox-key",
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
    # The catalog and an operator, as an operator would add them (demo_setup is refused here).
    code, output = _finish(_manage(
        env, "shell", "-c", "from shop.demo import demo_catalog_load; demo_catalog_load()"))
    assert code == 0, output
    code, output = _finish(_manage({**env, "DJANGO_SUPERUSER_PASSWORD": OPERATOR_PASSWORD},
                                   "createsuperuser", "--no-input", "--username", "operator",
                                   "--email", "operator@shop.example"))
    assert code == 0, output
    supplier = subprocess.Popen(
        [sys.executable, "-m", "fakes.supplier", "--port", env["SUPPLIER_BASE_URL"].rsplit(":", 1)[1],
         "--db", str(Path(env["STATIC_ROOT"]).parent / "supplier.sqlite3")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
                requests.get(f"{base}/healthz", timeout=5)
                break
            # Refused until it listens; a first answer can be slow while the worker imports.
            except (requests.ConnectionError, requests.Timeout):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("gunicorn did not come up:\n" + (server.communicate()[0] or ""))
                time.sleep(0.1)
        yield base, env
    finally:
        supplier.terminate()
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


class Browser:
    """One client behind the TLS proxy: the proxy's headers, and its own cookie jar.

    requests would not send Secure cookies over the plain HTTP between proxy and gunicorn, so
    the jar is kept here, as the browser on the far side of the proxy keeps it.
    """

    def __init__(self, base: str, address: str) -> None:
        self.base = base
        self.headers = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": address,
                        "Referer": f"https://{HOST}/"}
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **data: str) -> requests.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = requests.request(method, f"{self.base}{path}", data=data or None, timeout=10,
                                    headers={**self.headers, "Cookie": cookie},
                                    allow_redirects=False)
        for header in response.raw.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, *, form_page: str | None = None, **data: str) -> requests.Response:
        """POST to `path` with the CSRF token of its page (or of `form_page`), as a form would."""
        page = form_page or path
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(page).text)
        assert token, f"no form on {page}"
        return self.request("POST", path, csrfmiddlewaretoken=token.group(1), **data)


def _choose_standard(browser: Browser) -> None:
    catalog = browser.get("/").text
    package = re.search(r'name="package" value="(\d+)"', catalog)
    assert package, catalog[:500]
    assert browser.post("/", package=package.group(1)).status_code == 302


def test_acceptance_behind_the_proxy(gunicorn):
    """Issue #8's acceptance, against the production set-up: headers, lockout, limits, owners."""
    base, _ = gunicorn
    # CSP and HSTS on the storefront and the admin.
    for path in ("/", "/admin/login/"):
        page = Browser(base, "203.0.113.1").get(path)
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")

    # The admin locks a user out of one address after repeated wrong passwords, at the 20th at
    # the latest; the right password is refused from then on.
    attacker = Browser(base, "198.51.100.7")
    answers = [attacker.post("/admin/login/", username="operator", password=f"wrong-{n}").status_code
               for n in range(20)]
    assert answers[-1] == 429 and 429 in answers[:20], answers
    right = attacker.post("/admin/login/", username="operator", password=OPERATOR_PASSWORD)
    assert right.status_code == 429
    assert "sessionid" not in attacker.cookies

    # Recipient lookups: the 31st in a minute from one address is refused, though every
    # lookup comes from a fresh session and lands on either of two gunicorn workers.
    statuses = []
    for n in range(31):
        visitor = Browser(base, "192.0.2.55")
        _choose_standard(visitor)
        statuses.append(visitor.post("/recipient/", recipient=f"@user_{n:05d}").status_code)
    assert 429 not in statuses[:30] and statuses[30] == 429, statuses

    # A stranger with the order's link cannot act on it; its buyer can.
    buyer, stranger = Browser(base, "192.0.2.80"), Browser(base, "192.0.2.81")
    _choose_standard(buyer)
    assert buyer.post("/recipient/", recipient="@sandbox_ok").status_code == 302
    confirm = buyer.get("/confirm/").text
    token = re.search(r'name="token" value="([^"]+)"', confirm).group(1)
    placed = buyer.post("/confirm/", token=token, payment_method="sandbox")
    assert placed.status_code == 302 and placed.headers["Location"].endswith("/pay/")
    pay_path = placed.headers["Location"].removeprefix(f"https://{HOST}")
    # Their own session's CSRF token (from any page): CSRF is not what stops them.
    refused = stranger.post(pay_path, form_page="/", action="cancel")
    assert refused.status_code == 403
    status_json = pay_path.removesuffix("pay/") + "status.json"
    assert buyer.get(status_json).json()["status"] == "awaiting_payment"
    assert buyer.post(pay_path, action="cancel").status_code == 302
    assert buyer.get(status_json).json()["status"] == "cancelled"


def test_partner_api_in_production_mode(gunicorn):
    """The API behind the proxy: JSON errors, HSTS, a test key that works on the live host
    (the in-process sandbox supplier), and the docs page's own assets under our CSP."""
    base, env = gunicorn
    code, output = _finish(_manage(env, "apikey", "create", "--partner", "Prod partner", "--test"))
    assert code == 0, output
    token = next(line for line in output.splitlines() if line.startswith("rsk_test_"))
    proxied = {"Host": HOST, "X-Forwarded-Proto": "https"}

    anonymous = requests.get(f"{base}/api/v1/balance", headers=proxied, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert anonymous.headers["Strict-Transport-Security"].startswith("max-age=31536000")

    keyed = {**proxied, "Authorization": f"Bearer {token}"}
    assert requests.get(f"{base}/api/v1/balance", headers=keyed, timeout=5).json() == {
        "balance": "100.00", "currency": "USD", "sandbox": True}
    topup = requests.post(f"{base}/api/v1/topup", headers={**keyed, "Idempotency-Key": "prod-1"},
                          json={"platform": "telegram", "user_id": "123456789", "stars": 500},
                          timeout=10)
    assert topup.status_code == 201, topup.text
    assert topup.json()["status"] == "pending"

    docs = requests.get(f"{base}/api/v1/docs/", headers=proxied, timeout=5)
    assert docs.status_code == 200 and "Content-Security-Policy" in docs.headers
    assert "cdn" not in docs.text.lower()
    assets = re.findall(r'(?:src|href)="(/static/drf_spectacular_sidecar/[^"]+)"', docs.text)
    assert assets, docs.text[:1000]
    for asset in assets:
        assert requests.get(f"{base}{asset}", headers=proxied, timeout=5).status_code == 200, asset
