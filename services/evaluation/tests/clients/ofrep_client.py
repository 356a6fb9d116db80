"""Evaluates flags with the published Python OFREP provider and prints the results as JSON.

Usage: ofrep_client.py SPEC, where SPEC is JSON (or @file holding it):

    {"baseUrl": "http://127.0.0.1:8080", "key": "vxs_...", "auth": "bearer" | "x-api-key",
     "steps": [{"context": {"targetingKey": "user-1", ...},
                "flags": [{"key": "k", "type": "boolean|string|integer|float|object", "default": ...}]}]}

Prints {"steps": [[{"key", "value", "variant", "reason", "errorCode", "errorMessage"}, ...], ...]}.
Driven by services/evaluation/tests/api/providers.rs.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def text(value):
    """Enums (reasons, error codes) as their string value."""
    if value is None:
        return None
    return getattr(value, "value", value)


def main() -> None:
    raw = sys.argv[1]
    spec = json.loads(open(raw[1:]).read() if raw.startswith("@") else raw)
    key = spec["key"]
    if spec.get("auth", "bearer") == "x-api-key":
        headers = {"X-API-Key": key}
    else:
        headers = {"Authorization": f"Bearer {key}"}
    api.set_provider(OFREPProvider(spec["baseUrl"], headers_factory=lambda: headers, timeout=10.0))
    client = api.get_client()
    getters = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }
    steps = []
    for step in spec["steps"]:
        attributes = dict(step.get("context", {}))
        targeting_key = attributes.pop("targetingKey", None)
        context = EvaluationContext(targeting_key=targeting_key, attributes=attributes)
        results = []
        for flag in step["flags"]:
            details = getters[flag["type"]](flag["key"], flag["default"], context)
            results.append(
                {
                    "key": flag["key"],
                    "value": details.value,
                    "variant": details.variant,
                    "reason": text(details.reason),
                    "errorCode": text(details.error_code),
                    "errorMessage": details.error_message,
                }
            )
        steps.append(results)
    json.dump({"steps": steps}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
