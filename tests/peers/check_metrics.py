"""Parses pedf's /metrics text (stdin) with the Prometheus project's own Python client and
prints what it found as JSON: every family's type and samples. Fails (exit 1, reason on
stderr) if the text does not parse, or a histogram's buckets are not cumulative or its +Inf
bucket is not its count."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    out = {}
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser's own reason
        print(f"not Prometheus text: {e}", file=sys.stderr)
        return 1
    for f in families:
        samples = [[s.name, s.labels, s.value] for s in f.samples]
        out[f.name] = {"type": f.type, "samples": samples}
        if f.type == "histogram":
            buckets = [s for s in f.samples if s.name.endswith("_bucket")]
            values = [s.value for s in buckets]
            if values != sorted(values):
                print(f"{f.name}: buckets not cumulative: {values}", file=sys.stderr)
                return 1
            inf = [s.value for s in buckets if s.labels.get("le") == "+Inf"]
            count = [s.value for s in f.samples if s.name.endswith("_count")]
            if inf != count or not inf:
                print(f"{f.name}: +Inf bucket {inf} is not the count {count}", file=sys.stderr)
                return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
