"""Sentry starts only when SENTRY_DSN is set, without personal data, through the log redaction.

Each case runs in its own interpreter: sentry_sdk.init patches Django process-wide. The DSN
points at a closed port on 127.0.0.1 and nothing here raises an event, so nothing is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.conf import settings

PROBE = """
import json, django
django.setup()
import sentry_sdk
client = sentry_sdk.get_client()
before_send = client.options.get("before_send")
print(json.dumps({
    "active": client.is_active(),
    "environment": client.options.get("environment"),
    "send_default_pii": client.options.get("send_default_pii"),
    "before_send": before_send and f"{before_send.__module__}.{before_send.__name__}",
}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=settings.BASE_DIR,
                          env={**os.environ, "SENTRY_DSN": "", **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sentry_is_off_without_a_dsn():
    assert _probe()["active"] is False


def test_sentry_starts_with_a_dsn_without_personal_data():
    state = _probe(SENTRY_DSN="http://public-key@127.0.0.1:9/1", DJANGO_ENV="demo")
    assert state == {"active": True, "environment": "demo", "send_default_pii": False,
                     "before_send": "reseller.logging.sentry_before_send"}
