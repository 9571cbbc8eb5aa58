"""OpenAPI schema hooks: what drf-spectacular cannot read from the views."""

from __future__ import annotations


def empty_query_parameters_are_absent(result: dict, generator, request, public) -> dict:
    """`?status=` counts as leaving `status` out, as DRF reads an optional query parameter: say so."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result
