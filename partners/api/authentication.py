"""API keys: `Authorization: Bearer rsk_live_…` (or rsk_test_…), looked up by prefix, checked
against the stored hash in constant time; then the key's IP allowlist and rate limits."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework import authentication, exceptions

from partners.models import ApiKey
from partners.services import api_key_touch, key_hash
from reseller.ratelimits import BUCKETS, client_address, client_ip, limits_for, limits_hit


class ApiKeyUser:
    """What request.user is for a partner: the key, and its partner."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_active = True

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.partner = key.partner

    def __str__(self) -> str:
        return f"partner:{self.partner.pk}"


def key_from_token(token: str) -> ApiKey | None:
    """The active key this token is, or None; a wrong secret costs the same as a right one."""
    # rsk_<live|test>_<8 hex>_<secret>; the secret itself may hold underscores.
    parts = token.split("_", 3)
    if len(parts) != 4 or parts[0] != "rsk" or parts[1] not in ("live", "test") or len(token) > 200:
        return None
    prefix = "_".join(parts[:3])
    key = (ApiKey.objects.select_related("partner").filter(prefix=prefix).first())
    if key is None or not hmac.compare_digest(key.key_hash, key_hash(token)):
        return None
    if key.revoked_at is not None or not key.partner.active:
        return None
    return key


def address_allowed(key: ApiKey, address: str) -> bool:
    """Whether the key's allowlist (empty: anyone) admits this client address."""
    entries = [line.strip() for line in key.allowed_ips.replace(",", "\n").splitlines()]
    entries = [entry for entry in entries if entry]
    if not entries:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in entries:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class Unauthorized(exceptions.AuthenticationFailed):
    pass


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Bearer API keys; a missing or bad key is 401 before the view runs."""

    def authenticate(self, request: Any) -> tuple[ApiKeyUser, ApiKey]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send your API key as 'Authorization: Bearer <key>'.")
        key = key_from_token(token.strip())
        if key is None:
            raise Unauthorized("This API key is not valid, or was revoked.")
        if not address_allowed(key, client_address(request)):
            raise exceptions.PermissionDenied("This API key is not allowed from your address.")
        api_key_touch(key=key)
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'


def rate_limit_wait(request: HttpRequest, key: ApiKey | None) -> float | None:
    """Count one request; None when allowed, else the seconds to wait before the next.

    Per key (its own rate_limit or PARTNER_API_RATE), and per client address before a key is
    known, so guessing keys is limited too.
    """
    if key is None:
        scope, subject, rates = "api:ip", client_ip(request), settings.PARTNER_API_RATE_PER_IP
    else:
        scope, subject, rates = "api:key", key.prefix, key.rate_limit or settings.PARTNER_API_RATE
    limits = limits_for(scope, subject, rates)
    if not limits or limits_hit(limits):
        return None
    # A bucket of the shortest window leaves it within one bucket's length.
    shortest = min(limit.rate.seconds for limit in limits)
    return float(max(1, shortest // BUCKETS))
