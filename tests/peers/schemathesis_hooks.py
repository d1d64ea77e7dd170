"""A check for schemathesis (tests: crates/pedf-runtime/tests/fuzz_api.rs): every error
answer of the pedf API is JSON, as its OpenAPI document promises."""

import schemathesis


@schemathesis.check
def errors_are_json(ctx, response, case):
    if response.status_code >= 400:
        ct = response.headers.get("content-type", [""])
        ct = ct[0] if isinstance(ct, list) else ct
        if not ct.startswith("application/json"):
            raise AssertionError(
                f"{response.status_code} answered with content-type {ct!r}, not JSON"
            )
