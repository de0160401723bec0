"""A Hookgate plugin in Python: the rate-policy gate and the redact transform.

It implements two hooks, so it targets the world `policy` in `wit/`, which
includes `decide-plugin` and `transform-plugin`, and each hook is a class
named after its interface.

`decide` denies a `policy` object when one of its rules allows more requests
per second than the callback's `max_rps` (default 100). `transform` removes
every object key named in `fields` (comma separated, default
`password,@metadata`) from the delivered body, at any depth.
"""

import json

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Failure,
    Outgoing,
    Transformed_Send,
    Verdict_Allow,
    Verdict_Deny,
)
from componentize_py_types import Err

DEFAULT_MAX_RPS = 100


def fail(code, message):
    """Ends the call with a plugin failure, which the host records."""
    raise Err(Failure(code=code, message=message))


class Decide(exports.Decide):
    def decide(self, event):
        if event.object_type != "policy":
            return Verdict_Allow()
        raw = host.config("max_rps")
        try:
            max_rps = DEFAULT_MAX_RPS if raw is None else int(raw)
        except ValueError:
            fail("bad-config", f'"max_rps" is {raw!r}, not a whole number')
        for index, rule in enumerate(json.loads(event.data).get("rules", [])):
            name = f'rule "{rule["name"]}"' if "name" in rule else f"rule at index {index}"
            rps = rule.get("rps")
            if isinstance(rps, bool) or not isinstance(rps, (int, float)):
                fail("bad-data", f'{name} has no numeric "rps"')
            if rps > max_rps:
                return Verdict_Deny(
                    f"{name} allows {rps} requests/s, above the limit of {max_rps}"
                )
        return Verdict_Allow()


class Transform(exports.Transform):
    def transform(self, event, request):
        fields = host.config("fields") or "password,@metadata"
        names = {f.strip() for f in fields.split(",") if f.strip()}
        body = redact(json.loads(request.body), names)
        host.log(host.Level.DEBUG, f"redacted {sorted(names)}")
        return Transformed_Send(
            Outgoing(headers=request.headers, body=json.dumps(body).encode())
        )


def redact(value, names):
    if isinstance(value, dict):
        return {k: redact(v, names) for k, v in value.items() if k not in names}
    if isinstance(value, list):
        return [redact(v, names) for v in value]
    return value
