"""The admin login: lockout per user and address (django-axes), TOTP codes (django-otp)."""

import os
import re
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "correct horse battery staple"
LOGIN = reverse("admin:login") + "?next=" + reverse("admin:index")

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="alice", password=PASSWORD, is_staff=True)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", email="", password=PASSWORD)


def login(client: Client, username: str, password: str = PASSWORD, ip: str = "192.0.2.1", **data):
    return client.post(LOGIN, {"username": username, "password": password, **data}, REMOTE_ADDR=ip)


def in_admin(client: Client) -> bool:
    return client.get(reverse("admin:index")).status_code == 200


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def test_the_right_password_logs_in(client, staff):
    response = login(client, "alice")
    assert response.status_code == 302 and response.url == reverse("admin:index")
    assert in_admin(client)


def test_twenty_wrong_passwords_lock_the_account_even_for_the_right_one(client, staff):
    statuses = [login(client, "alice", "wrong").status_code for _ in range(20)]
    limit = django_settings.AXES_FAILURE_LIMIT
    assert limit <= 20
    # Wrong passwords get the form again until the limit; from there on the lockout page.
    assert statuses[:limit - 1] == [200] * (limit - 1)
    assert statuses[limit - 1:] == [429] * (20 - limit + 1)

    response = login(client, "alice")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "Try again in 30 minutes" in response.content.decode()
    assert not in_admin(client)


def test_fewer_failures_than_the_limit_do_not_lock(client, staff):
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        login(client, "alice", "wrong")
    assert login(client, "alice").status_code == 302
    assert in_admin(client)


def test_the_lockout_is_per_user_and_address(staff, django_user_model):
    django_user_model.objects.create_user(username="bob", password=PASSWORD, is_staff=True)
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        login(Client(), "alice", "wrong", ip="192.0.2.1")
    assert login(Client(), "alice", ip="192.0.2.1").status_code == 429

    # The operator elsewhere still gets in, and so does a colleague behind the same address.
    assert login(Client(), "alice", ip="198.51.100.2").status_code == 302
    assert login(Client(), "bob", ip="192.0.2.1").status_code == 302


def test_behind_the_proxy_the_client_is_the_address_it_appended(client, staff, settings):
    settings.TRUSTED_PROXY_COUNT = 1  # one TLS proxy in front, as in production
    proxy = "10.0.0.5"

    def attempt(forwarded_for: str, password: str = PASSWORD):
        return Client().post(LOGIN, {"username": "alice", "password": password},
                             REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded_for)

    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        attempt("203.0.113.7", "wrong")
    assert attempt("203.0.113.7").status_code == 429
    # What the client wrote to the left of the proxy's entry changes nothing.
    assert attempt("198.51.100.9, 203.0.113.7").status_code == 429
    # Another client behind the same proxy is not locked out.
    assert attempt("198.51.100.9").status_code == 302


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(staff, settings):
    settings.TRUSTED_PROXY_COUNT = 0  # the demo: reached directly, anyone can send the header
    for number in range(django_settings.AXES_FAILURE_LIMIT):
        Client().post(LOGIN, {"username": "alice", "password": "wrong"},
                      HTTP_X_FORWARDED_FOR=f"203.0.113.{number}")
    response = Client().post(LOGIN, {"username": "alice", "password": PASSWORD},
                             HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert response.status_code == 429


# --- TOTP -----------------------------------------------------------------------------------


@pytest.fixture
def device(staff) -> TOTPDevice:
    return TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)


def test_staff_with_an_authenticator_must_give_its_code(client, device):
    response = login(client, "alice")
    assert response.status_code == 200
    assert "Please enter your OTP token." in response.content.decode()
    assert not in_admin(client)


def test_a_wrong_code_is_refused(client, device):
    wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"
    response = login(client, "alice", otp_token=wrong)
    assert response.status_code == 200
    assert "Invalid token" in response.content.decode()
    assert not in_admin(client)


def test_the_right_code_lets_staff_in(client, device):
    response = login(client, "alice", otp_token=code(device))
    assert response.status_code == 302
    assert in_admin(client)


def test_a_session_without_the_code_is_not_enough(client, device, staff):
    client.force_login(staff)  # a password-only session, e.g. from before the device was added
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_wrong_codes_count_towards_the_lockout(client, device, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # only axes' count here, not the device's back-off
    limit = django_settings.AXES_FAILURE_LIMIT
    statuses = [login(client, "alice", otp_token="000000").status_code for _ in range(limit)]
    assert statuses[-1] == 429
    assert login(client, "alice", otp_token=code(device)).status_code == 429


def test_staff_without_an_authenticator_need_no_code(client, staff, settings):
    settings.ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS = True
    assert login(client, "alice").status_code == 302
    assert in_admin(client)


def test_where_required_a_superuser_without_an_authenticator_is_refused(client, superuser, settings):
    settings.ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS = True
    response = login(client, "root")
    assert response.status_code == 200
    assert "manage.py admin_totp root" in response.content.decode()
    assert not in_admin(client)

    # Nor does a session opened some other way get in; the login page says what to do.
    client.force_login(superuser)
    assert not in_admin(client)
    assert "manage.py admin_totp root" in client.get(reverse("admin:login")).content.decode()


def test_where_required_a_superuser_with_an_authenticator_gets_in(client, superuser, settings):
    settings.ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS = True
    out = StringIO()
    call_command("admin_totp", "root", "--no-qr", stdout=out)
    url = re.search(r"otpauth://\S+", out.getvalue()).group(0)
    assert "secret=" in url and "issuer=" in url
    device = TOTPDevice.objects.get(user=superuser)
    assert login(client, "root", otp_token=code(device)).status_code == 302
    assert in_admin(client)


def test_admin_totp_keeps_an_existing_device_unless_told(superuser):
    call_command("admin_totp", "root", "--no-qr", stdout=StringIO())
    first = TOTPDevice.objects.get(user=superuser)
    with pytest.raises(CommandError, match="already has an authenticator"):
        call_command("admin_totp", "root", stdout=StringIO())
    out = StringIO()
    call_command("admin_totp", "root", "--replace", stdout=out)
    assert TOTPDevice.objects.get(user=superuser).key != first.key
    assert "█" in out.getvalue() or "▀" in out.getvalue()  # the QR code drawn in the terminal
    with pytest.raises(CommandError, match="No user"):
        call_command("admin_totp", "nobody", stdout=StringIO())


def test_production_requires_totp_for_superusers(tmp_path):
    """What DJANGO_ENV=production sets: read from a fresh interpreter, as gunicorn would."""
    environment = {
        **os.environ, "DJANGO_ENV": "production", "SECRET_KEY": "x" * 50,
        "SITE_URL": "https://shop.example", "ALLOWED_HOSTS": "shop.example",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "STATIC_ROOT": str(tmp_path),
        "ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS": "false",  # cannot be switched off there
        "DJANGO_SETTINGS_MODULE": "reseller.settings",
    }
    script = "from django.conf import settings as s; print(s.ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS)"
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True,
                            text=True, cwd=django_settings.BASE_DIR, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
