"""Payment provider webhooks: verify the raw body, store it in the inbox, apply it."""

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.exceptions import PaymentMethodUnavailable, WebhookRejected
from orders.payments import payment_provider_get
from orders.payments.services import payment_notice_accept

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 256 * 1024


@csrf_exempt  # authenticated by the provider's signature instead
@require_POST
def payment_webhook(request: HttpRequest, provider: str) -> HttpResponse:
    """Accept a provider callback only when its signature verifies; answer 400 otherwise."""
    try:
        gateway = payment_provider_get(provider)
    except PaymentMethodUnavailable:
        return JsonResponse({"error": "unknown provider"}, status=404)
    body = request.body
    if len(body) > MAX_WEBHOOK_BODY:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        notices = gateway.verify_webhook(headers=request.headers, body=body)
    except WebhookRejected as exc:
        logger.warning("rejected %s webhook: %s", provider, exc)
        return JsonResponse({"error": "rejected"}, status=400)
    events = [payment_notice_accept(notice=notice) for notice in notices]
    return JsonResponse({"ok": True, "events": [e.outcome for e in events]})
