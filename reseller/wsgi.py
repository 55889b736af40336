"""
WSGI config for reseller project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'reseller.settings')

django_application = get_wsgi_application()

# /healthz before Django, so a load balancer may probe it by IP (not in ALLOWED_HOSTS).
from reseller.health import HealthzFirst  # noqa: E402  (needs Django set up, above)

application = HealthzFirst(django_application)
