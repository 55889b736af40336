"""Same-run reference tasks for the django-q2 benchmarks: the least a task can do for the same job.

telegram_send is what a bare notice task costs: one sendMessage over a kept HTTP connection,
no database, no rate limiter, no python-telegram-bot. bench/telegram_burst.py runs it through
the same cluster as the shop's order_notify, for the ratio.
"""

from __future__ import annotations

import requests
from django.conf import settings

_session = requests.Session()


def telegram_send(chat_id: int, text: str) -> int:
    """POST sendMessage to the Bot API at settings.TELEGRAM_API_BASE_URL; returns the message ID."""
    answer = _session.post(f"{settings.TELEGRAM_API_BASE_URL}{settings.TELEGRAM_BOT_TOKEN}/sendMessage",
                           data={"chat_id": chat_id, "text": text}, timeout=10)
    answer.raise_for_status()
    return int(answer.json()["result"]["message_id"])
