"""The partner API's one error shape: {"error": {"code", "message", "retryable"}}."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

# Every code the API answers with, and whether repeating the same request may succeed later.
CODES: dict[str, bool] = {
    "invalid_request": False,
    "invalid_recipient": False,
    "amount_out_of_range": False,
    "product_unavailable": False,
    "insufficient_balance": False,
    "rate_limited": True,
    "idempotency_conflict": False,
    "unauthorized": False,
    "forbidden": False,
    "not_found": False,
    "method_not_allowed": False,
    "unavailable": True,
}


class ApiError(exceptions.APIException):
    """An answer with one of CODES; `retry_after` adds a Retry-After header (seconds)."""

    def __init__(self, http_status: int, code: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.error_code = code
        self.message = message
        self.retry_after = retry_after


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "retryable": CODES.get(code, False),
                      **extra}}


def error_response(http_status: int, code: str, message: str, *,
                   retry_after: float | None = None) -> Response:
    extra = {"retry_after": retry_after} if retry_after is not None else {}
    response = Response(error_body(code, message, **extra), status=http_status)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, int(-(-retry_after // 1))))
    return response


def _first_message(detail: Any) -> str:
    """The first human message in DRF's nested validation detail, prefixed by its field."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, answering in our shape; anything else stays a 500 for the error log."""
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.error_code, exc.message,
                              retry_after=exc.retry_after)
    if isinstance(exc, exceptions.ValidationError):
        return error_response(status.HTTP_400_BAD_REQUEST, "invalid_request",
                              _first_message(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return error_response(status.HTTP_400_BAD_REQUEST, "invalid_request",
                              "The body is not valid JSON.")
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error_response(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "invalid_request",
                              "Send the body as application/json.")
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response = error_response(status.HTTP_401_UNAUTHORIZED, "unauthorized",
                                  str(exc.detail))
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, exceptions.PermissionDenied):
        return error_response(status.HTTP_403_FORBIDDEN, "forbidden", str(exc.detail))
    if isinstance(exc, exceptions.NotFound):
        return error_response(status.HTTP_404_NOT_FOUND, "not_found", "No such resource.")
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error_response(status.HTTP_405_METHOD_NOT_ALLOWED, "method_not_allowed",
                              str(exc.detail))
    if isinstance(exc, exceptions.NotAcceptable):
        return error_response(status.HTTP_406_NOT_ACCEPTABLE, "invalid_request",
                              "The API answers in application/json only.")
    if isinstance(exc, exceptions.Throttled):
        return error_response(status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited",
                              "Too many requests.", retry_after=float(exc.wait or 1))
    response = drf_exception_handler(exc, context)
    if response is not None:
        return error_response(response.status_code, "invalid_request", _first_message(response.data))
    return None
