"""drf-spectacular's description of our API-key authentication (Bearer rsk_live_… / rsk_test_…)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "partners.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer",
                "description": "A partner API key: rsk_live_… (live) or rsk_test_… (sandbox)."}
