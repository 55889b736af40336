"""The partner API (/api/v1/): thin DRF views over partners.services and partners.selectors."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.views import SpectacularAPIView
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.exceptions import (
    InvalidRecipient,
    InvalidRecipientInput,
    SupplierError,
)
from partners import selectors, services
from partners.api import serializers as s
from partners.api.authentication import ApiKeyAuthentication, rate_limit_wait
from partners.api.errors import ApiError
from partners.exceptions import PartnerError
from partners.models import ApiKey
from shop.exceptions import MarginTooLow, ProductUnavailable, QuantityOutOfRange

def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(s.ErrorSerializer, description=description)


# What any endpoint may answer besides its own success, each in the one error shape.
ERRORS = {code: _error(text) for code, text in {
    400: "invalid_request: the body or a parameter is malformed",
    401: "unauthorized: no valid API key",
    403: "forbidden: the key is not allowed from this address",
    405: "method_not_allowed: the path does not take this method",
    406: "invalid_request: the Accept header rules out application/json",
    429: "rate_limited: wait Retry-After seconds",
}.items()}
# ...and what endpoints taking a body may answer too.
BODY_ERRORS = {415: _error("invalid_request: the body is not application/json")}
RESPONSE_HEADERS = [
    OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[429, 503],
                     description="Seconds to wait before trying again."),
    OpenApiParameter("WWW-Authenticate", str, OpenApiParameter.HEADER, response=[401],
                     description='Bearer realm="api"'),
]
# 1 to 100 printable ASCII characters, no leading or trailing space: what survives an HTTP
# header unchanged, so the key stored is the key the partner sent; and at most a reference's
# length: without a reference, the key becomes the order's.
IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,98}[!-~])?")
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 100,
                        "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
    OpenApiParameter.HEADER, required=True,
    description="Unique per top-up (e.g. a UUID): 1 to 100 printable ASCII characters. The same "
                "key and body return the original answer; another body under the same key is "
                "refused with 409. Kept 48 h.")
REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed", str, OpenApiParameter.HEADER, response=[201], enum=["true"],
    description="Present when this is the stored answer to an earlier request with the same "
                "Idempotency-Key.")
LIMIT = OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100},
                         description="1 to 100, default 50.")
# A query string PostgreSQL can compare: text there cannot hold NUL.
NO_NUL = {"type": "string", "pattern": r"^[^\x00]*$"}
CURSOR = OpenApiParameter("cursor", str, description="next_cursor of the previous page.")


def _unavailable(exc: SupplierError) -> ApiError:
    return ApiError(503, "unavailable", "The supplier cannot be reached right now; try again.",
                    retry_after=5)


def _product(platform: str) -> Any:
    product = selectors.product_for(platform)
    if product is None:
        raise ApiError(422, "product_unavailable", f"Nothing is on sale for {platform}.")
    return product


def _cursor_decode(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        value = int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "cursor is not one this API gave you.") from None
    if value < 1:
        raise ApiError(400, "invalid_request", "cursor is not one this API gave you.")
    return value


def cursor_encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(400, "invalid_request", "limit must be a whole number from 1 to 100.")
    return int(raw)


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(400, "invalid_request",
                       f"{name} must be an ISO 8601 time with a zone, e.g. 2026-11-30T00:00:00Z.")
    # In UTC: PostgreSQL refuses offsets past ±15:59 that Python accepts (up to ±23:59). A time
    # in year 1 or 9999 that UTC cannot hold is as good as the earliest or latest one.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


class PartnerView(APIView):
    """Authenticated by API key, rate-limited per client address and then per key."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        wait = rate_limit_wait(request, None)
        if wait is not None:
            raise ApiError(429, "rate_limited", "Too many requests from your address.",
                           retry_after=wait)
        super().initial(request, *args, **kwargs)
        wait = rate_limit_wait(request, self.key)
        if wait is not None:
            raise ApiError(429, "rate_limited", "Too many requests with this API key.",
                           retry_after=wait)
        # PostgreSQL refuses NUL in text: a filter with one would be a database error.
        if any("\x00" in value for _name, values in request.query_params.lists()
               for value in values):
            raise ApiError(400, "invalid_request", "Query parameters must not contain NUL.")

    @property
    def key(self) -> ApiKey:
        return self.request.auth


class ProductsView(PartnerView):
    @extend_schema(operation_id="products_list", parameters=RESPONSE_HEADERS,
                   responses={200: s.ProductListSerializer, **ERRORS},
                   summary="What you can buy, at your prices")
    def get(self, request: Request) -> Response:
        return Response({"products": selectors.products_for_partner(partner=self.key.partner)})


class ValidateUserView(PartnerView):
    @extend_schema(operation_id="validate_user", request=s.ValidateUserRequestSerializer,
                   parameters=RESPONSE_HEADERS,
                   examples=[
                       OpenApiExample("By username", request_only=True,
                                      value={"platform": "telegram", "user_id": "@sandbox_ok"}),
                       OpenApiExample("By numeric ID", request_only=True,
                                      value={"platform": "telegram", "user_id": "123456789"}),
                   ],
                   responses={200: s.ValidateUserResponseSerializer,
                              503: _error("unavailable: the supplier cannot be reached"),
                              **ERRORS, **BODY_ERRORS},
                   summary="Check a recipient and get their current username")
    def post(self, request: Request) -> Response:
        form = s.ValidateUserRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            _normalised, info = services.recipient_check(key=self.key,
                                                         user_id=form.validated_data["user_id"])
        except InvalidRecipientInput as exc:
            return Response({"valid": False, "user_id": None, "username": None,
                             "reason": str(exc)})
        except InvalidRecipient:
            return Response({"valid": False, "user_id": None, "username": None,
                             "reason": "No Telegram account that can receive Stars."})
        except SupplierError as exc:
            raise _unavailable(exc) from exc
        return Response({"valid": True, "user_id": info.user_id, "username": info.username})


class TopupView(PartnerView):
    @extend_schema(
        operation_id="topup_create", request=s.TopupRequestSerializer,
        parameters=[IDEMPOTENCY_HEADER, REPLAYED_HEADER, *RESPONSE_HEADERS],
        examples=[
            OpenApiExample("Custom amount", request_only=True,
                           value={"platform": "telegram", "user_id": "@sandbox_ok", "stars": 500,
                                  "reference": "your-order-1001"}),
            OpenApiExample("Numeric recipient", request_only=True,
                           value={"platform": "telegram", "user_id": "123456789", "stars": 100}),
        ],
        responses={
            201: s.OrderSerializer,
            402: _error("insufficient_balance: your balance does not cover the price"),
            409: _error("idempotency_conflict: the Idempotency-Key was used with another body, "
                        "or the reference names another order"),
            422: _error("invalid_recipient, amount_out_of_range or product_unavailable"),
            503: _error("unavailable: the supplier cannot be reached"),
            **ERRORS, **BODY_ERRORS,
        },
        summary="Place a top-up, paid from your balance",
    )
    def post(self, request: Request) -> Response:
        idempotency_key = request.headers.get("Idempotency-Key", "")
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ApiError(400, "invalid_request",
                           "Send an Idempotency-Key header (1 to 100 printable ASCII characters), "
                           "unique per top-up.")
        body = request.data
        fingerprint = services.request_fingerprint(body)
        try:
            replay = services.idempotent_replay(key=self.key, idempotency_key=idempotency_key,
                                                fingerprint=fingerprint)
            if replay is not None:
                return Response(replay.body, status=replay.status_code,
                                headers={"Idempotent-Replayed": "true"})
            form = s.TopupRequestSerializer(data=body)
            form.is_valid(raise_exception=True)
            data = form.validated_data
            product = _product(data["platform"])
            try:
                recipient_input, info = services.recipient_check(key=self.key,
                                                                 user_id=data["user_id"])
            except (InvalidRecipientInput, InvalidRecipient) as exc:
                raise ApiError(422, "invalid_recipient",
                               str(exc) if isinstance(exc, InvalidRecipientInput)
                               else "No Telegram account that can receive Stars.") from exc
            except SupplierError as exc:
                raise _unavailable(exc) from exc
            try:
                quote = services.partner_quote(partner=self.key.partner, product=product,
                                               package_id=data.get("package_id"),
                                               stars=data.get("stars"))
            except QuantityOutOfRange as exc:
                raise ApiError(422, "amount_out_of_range", str(exc)) from exc
            except ProductUnavailable as exc:
                raise ApiError(422, "product_unavailable", str(exc)) from exc
            if not quote.allowed:
                raise ApiError(422, "product_unavailable", "This amount is not on sale right now.")
            try:
                result = services.topup_place(
                    key=self.key, idempotency_key=idempotency_key, fingerprint=fingerprint,
                    quote=quote, recipient_input=recipient_input, recipient=info,
                    reference=data.get("reference", ""))
            except MarginTooLow as exc:
                raise ApiError(422, "product_unavailable", str(exc)) from exc
        except PartnerError as exc:
            raise ApiError(exc.http_status, exc.code, exc.message) from exc
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.body, status=result.status_code, headers=headers)


ORDER_OR_LIST = PolymorphicProxySerializer(
    component_name="OrderOrList", serializers=[s.OrderSerializer, s.OrderListSerializer],
    resource_type_field_name=None)


class OrdersView(PartnerView):
    @extend_schema(
        operation_id="orders_list",
        parameters=[
            OpenApiParameter("reference", NO_NUL, description="Your reference (or Idempotency-Key):"
                             " answers with that one order instead of a list, or 404."),
            OpenApiParameter("status", str, enum=["pending", "processing", "completed", "failed"]),
            OpenApiParameter("user_id", NO_NUL, description="Recipient's numeric ID."),
            OpenApiParameter("created_after", datetime, description="Inclusive, ISO 8601."),
            OpenApiParameter("created_before", datetime, description="Exclusive, ISO 8601."),
            LIMIT, CURSOR, *RESPONSE_HEADERS,
        ],
        responses={200: ORDER_OR_LIST,
                   404: OpenApiResponse(s.ErrorSerializer, description="not_found"), **ERRORS},
        summary="Your orders, newest first; or one by your reference",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        reference = params.get("reference")
        if reference is not None:
            order = selectors.partner_order_by_reference(key=self.key, reference=reference)
            if order is None:
                raise ApiError(404, "not_found", "You have no order with that reference.")
            return Response(services.partner_order_wire(order))
        wire_filter = params.get("status")
        if wire_filter is not None and wire_filter not in ("pending", "processing", "completed", "failed"):
            raise ApiError(400, "invalid_request",
                           "status must be pending, processing, completed or failed.")
        page, next_id = selectors.partner_orders_page(
            key=self.key, status=wire_filter or "", user_id=params.get("user_id", ""),
            created_after=_time_param(request, "created_after"),
            created_before=_time_param(request, "created_before"),
            before_id=_cursor_decode(params.get("cursor")), limit=_limit(params.get("limit")))
        return Response({"orders": [services.partner_order_wire(order) for order in page],
                         "next_cursor": cursor_encode(next_id) if next_id else None})


class OrderView(PartnerView):
    @extend_schema(operation_id="order_get", parameters=RESPONSE_HEADERS,
                   responses={200: s.OrderSerializer,
                              404: OpenApiResponse(s.ErrorSerializer, description="not_found"),
                              **ERRORS},
                   summary="One of your orders")
    def get(self, request: Request, order_id: str) -> Response:
        order = selectors.partner_order_get(key=self.key, order_id=order_id)
        if order is None:
            raise ApiError(404, "not_found", "You have no order with that id.")
        return Response(services.partner_order_wire(order))


class BalanceView(PartnerView):
    @extend_schema(operation_id="balance_get", parameters=RESPONSE_HEADERS,
                   responses={200: s.BalanceSerializer, **ERRORS},
                   summary="Your prepaid balance (the sandbox one for a test key)")
    def get(self, request: Request) -> Response:
        partner = selectors.partner_fresh(self.key.partner)
        amount = partner.sandbox_balance if self.key.test else partner.balance
        return Response({"balance": str(amount), "currency": partner.currency,
                         "sandbox": self.key.test})


class LedgerView(PartnerView):
    @extend_schema(
        operation_id="ledger_list",
        parameters=[LIMIT, CURSOR, *RESPONSE_HEADERS],
        responses={200: s.LedgerSerializer, **ERRORS},
        summary="Every move of your balance, newest first")
    def get(self, request: Request) -> Response:
        entries, next_id = selectors.ledger_page(
            key=self.key, before_id=_cursor_decode(request.query_params.get("cursor")),
            limit=_limit(request.query_params.get("limit")))
        return Response({"entries": entries,
                         "next_cursor": cursor_encode(next_id) if next_id else None})


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: no key needed, so limited per client address (it is built afresh
    on every request)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # After content negotiation, so a refusal comes in the format asked for (?format=json).
        super().initial(request, *args, **kwargs)
        wait = rate_limit_wait(request, None)
        if wait is not None:
            raise ApiError(429, "rate_limited", "Too many requests from your address.",
                           retry_after=wait)


def not_found_view(request: Any, *args: Any, **kwargs: Any) -> Any:
    """Any other path under /api/v1/: the API's own 404 body, not the storefront's page."""
    from django.http import JsonResponse

    from partners.api.errors import error_body

    return JsonResponse(error_body("not_found", "No such endpoint."), status=status.HTTP_404_NOT_FOUND)
