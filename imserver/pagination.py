"""The contract's paging: `{"<items>": [...], "total", "page", "page_size"}`, strict bounds."""
from django.conf import settings
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.response import Response


class PageParams(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(min_value=1, default=None)

    def validate_page_size(self, value):
        limit = settings.IM_PAGE_SIZE_MAX
        if value is None:
            return settings.IM_PAGE_SIZE_DEFAULT
        if value > limit:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {limit}.")
        return value


class ContractPagination(BasePagination):
    """Page numbers from 1; a page past the end is an empty list, bad bounds a VALIDATION_ERROR."""

    items_key = "results"

    def __init__(self, items_key: str | None = None):
        if items_key:
            self.items_key = items_key

    def paginate_queryset(self, queryset, request, view=None):
        params = PageParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        self.page = params.validated_data["page"]
        self.page_size = params.validated_data["page_size"] or settings.IM_PAGE_SIZE_DEFAULT
        self.total = queryset.count()
        start = (self.page - 1) * self.page_size
        if start >= self.total:
            return []  # never hand the database an offset past the end: a huge page overflows its integers
        return list(queryset[start : start + self.page_size])

    def get_paginated_response(self, data):
        return Response(
            {self.items_key: data, "total": self.total, "page": self.page, "page_size": self.page_size}
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": [self.items_key, "total", "page", "page_size"],
            "properties": {
                self.items_key: schema,
                "total": {"type": "integer"},
                "page": {"type": "integer"},
                "page_size": {"type": "integer"},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": settings.IM_PAGE_SIZE_MAX},
            },
        ]


def paginator_for(items_key: str):
    return type(f"{items_key.title()}Pagination", (ContractPagination,), {"items_key": items_key})
