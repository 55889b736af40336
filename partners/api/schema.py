"""drf-spectacular's description of our API-key authentication (Bearer rsk_live_… / rsk_test_…)."""

from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "partners.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer",
                "description": "A partner API key: rsk_live_… (live) or rsk_test_… (sandbox)."}


class TopupRequestSchema(OpenApiSerializerExtension):
    """POST /topup takes stars or package_id, exactly one: said in the schema, so that clients
    generated from it (and the fuzz test) know a body with both or neither is refused."""

    target_class = "partners.api.serializers.TopupRequestSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["oneOf"] = [{"required": ["stars"]}, {"required": ["package_id"]}]
        return schema


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """Request strings may not hold NUL (DRF refuses it; PostgreSQL could not store it)."""

    target_class = "partners.api.serializers.StrictCharField"

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["pattern"] = r"^[^\x00]*$"
        return schema
