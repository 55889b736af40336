"""Request and response shapes of the partner API (they are also the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from partners.wire import WIRE_STATUSES


class StrictCharField(serializers.CharField):
    """A JSON string only: DRF's CharField would turn 123 or 1.5 into "123" or "1.5", which the
    schema (type: string) says is refused."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: DRF's IntegerField would take "500" or 500.0 as 500."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    retryable = serializers.BooleanField()
    retry_after = serializers.FloatField(required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Components are named without the serializer's "Request": drf-spectacular appends its own
# (COMPONENT_SPLIT_REQUEST) to request bodies, which would make "ValidateUserRequestRequest".
@extend_schema_serializer(component_name="ValidateUser")
class ValidateUserRequestSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=["telegram"], default="telegram")
    user_id = StrictCharField(max_length=200, trim_whitespace=False,
                              help_text="A numeric Telegram user ID or an @username.")


class ValidateUserResponseSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    user_id = serializers.CharField(allow_null=True)
    username = serializers.CharField(allow_null=True)
    reason = serializers.CharField(required=False)


@extend_schema_serializer(component_name="Topup")
class TopupRequestSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=["telegram"], default="telegram")
    user_id = StrictCharField(max_length=200, trim_whitespace=False,
                              help_text="The recipient: numeric user ID or @username.")
    stars = StrictIntegerField(required=False, min_value=1, max_value=1_000_000,
                               help_text="How many Stars; or give package_id.")
    package_id = StrictIntegerField(required=False, min_value=1, max_value=2**31 - 1)
    reference = StrictCharField(required=False, max_length=100, allow_blank=False,
                                help_text="Your own reference; defaults to the "
                                          "Idempotency-Key. Unique among your orders.")

    def validate(self, attrs: dict) -> dict:
        if ("stars" in attrs) == ("package_id" in attrs):
            raise serializers.ValidationError("Give either stars or package_id.")
        return attrs


class OrderSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=list(WIRE_STATUSES))
    platform = serializers.CharField()
    user_id = serializers.CharField()
    username = serializers.CharField(allow_null=True)
    stars = serializers.IntegerField()
    package_id = serializers.IntegerField(allow_null=True)
    cost = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    refunded = serializers.BooleanField()
    failure_reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


class OrderListSerializer(serializers.Serializer):
    orders = OrderSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class PackageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    stars = serializers.IntegerField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    list_price = serializers.DecimalField(max_digits=12, decimal_places=2)


class ProductSerializer(serializers.Serializer):
    id = serializers.CharField()
    platform = serializers.CharField()
    name = serializers.CharField()
    unit = serializers.CharField()
    currency = serializers.CharField()
    custom_amount = serializers.BooleanField()
    min_stars = serializers.IntegerField()
    max_stars = serializers.IntegerField()
    custom_unit_price = serializers.DecimalField(max_digits=12, decimal_places=6)
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    packages = PackageSerializer(many=True)


class ProductListSerializer(serializers.Serializer):
    products = ProductSerializer(many=True)


class BalanceSerializer(serializers.Serializer):
    balance = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    sandbox = serializers.BooleanField()


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    balance_after = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    order_id = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class LedgerSerializer(serializers.Serializer):
    entries = LedgerEntrySerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
