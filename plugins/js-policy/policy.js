// A Hookgate plugin in JavaScript: the rate-policy gate and the redact
// transform.
//
// `decide` denies a `policy` object when one of its rules allows more
// requests per second than the callback's `max_rps` (default 100).
// `transform` removes every object key named in `fields` (comma separated,
// default `password,@metadata`) from the delivered body, at any depth.
//
// It implements two hooks, so it targets the world `policy` in `wit/`, which
// includes `decide-plugin` and `transform-plugin`, and exports one object per
// hook interface.
import { config, log } from "hookgate:plugin/host@0.2.0";

const DEFAULT_MAX_RPS = 100;

// Throwing `{code, message}` ends the call with that `failure`, which the
// host records.
function fail(code, message) {
  throw { code, message };
}

// Any other error becomes a failure too, with its stack, so that a bug reads
// as one in history and in `hookgate plugin run`.
function guarded(hook) {
  return (...args) => {
    try {
      return hook(...args);
    } catch (error) {
      if (error instanceof Error) {
        throw { code: "uncaught", message: `${error}\n${error.stack}` };
      }
      throw error;
    }
  };
}

function decideHook(event) {
  if (event.objectType !== "policy") {
    return { tag: "allow" };
  }
  const raw = config("max_rps");
  const maxRps = raw === undefined ? DEFAULT_MAX_RPS : Number(raw);
  if (!Number.isInteger(maxRps)) {
    fail("bad-config", `"max_rps" is "${raw}", not a whole number`);
  }
  const rules = JSON.parse(event.data).rules ?? [];
  for (const [index, rule] of rules.entries()) {
    const name = "name" in rule ? `rule "${rule.name}"` : `rule at index ${index}`;
    if (typeof rule.rps !== "number") {
      fail("bad-data", `${name} has no numeric "rps"`);
    }
    if (rule.rps > maxRps) {
      return {
        tag: "deny",
        val: `${name} allows ${rule.rps} requests/s, above the limit of ${maxRps}`,
      };
    }
  }
  return { tag: "allow" };
}

function transformHook(event, request) {
  const fields = config("fields") ?? "password,@metadata";
  const names = new Set(fields.split(",").map((f) => f.trim()).filter((f) => f));
  const body = redact(JSON.parse(new TextDecoder().decode(request.body)), names);
  log("debug", `redacted ${[...names].sort().join(",")}`);
  return {
    tag: "send",
    val: { headers: request.headers, body: new TextEncoder().encode(JSON.stringify(body)) },
  };
}

export const decide = { decide: guarded(decideHook) };
export const transform = { transform: guarded(transformHook) };

function redact(value, names) {
  if (Array.isArray(value)) {
    return value.map((v) => redact(v, names));
  }
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => !names.has(k))
        .map(([k, v]) => [k, redact(v, names)]),
    );
  }
  return value;
}
