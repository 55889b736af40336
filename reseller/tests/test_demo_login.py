"""No default account outside the demo: demo_setup refuses to run in production."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_demo_setup_refuses_in_production(settings):
    settings.DJANGO_ENV = "production"
    with pytest.raises(CommandError, match="demo only, and DJANGO_ENV=production"):
        call_command("demo_setup")
    assert not get_user_model().objects.exists()
