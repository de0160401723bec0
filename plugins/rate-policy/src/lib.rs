//! A before-gate for `policy` objects: denies a policy when one of its rules
//! allows more requests per second than the configured limit, `max_rps`.
//!
//! Every other object type is allowed, and so is a policy without `rules`.

use hookgate_sdk::{Decide, Event, Failure, Verdict};
use serde::Deserialize;
use serde_json::Value;

/// The limit used when the callback does not configure `max_rps`.
const DEFAULT_MAX_RPS: u64 = 100;

struct RatePolicy;

impl Decide for RatePolicy {
    fn decide(event: Event) -> Result<Verdict, Failure> {
        if event.object_type != "policy" {
            return Ok(Verdict::allow());
        }
        let max_rps = hookgate_sdk::config_parse("max_rps", DEFAULT_MAX_RPS)?;
        check(&event.data()?, max_rps)
    }
}

hookgate_sdk::export!(RatePolicy: Decide);

/// The part of a policy object this plugin reads.
#[derive(Deserialize)]
struct Policy {
    #[serde(default)]
    rules: Vec<Value>,
}

fn check(policy: &Policy, max_rps: u64) -> Result<Verdict, Failure> {
    for (index, rule) in policy.rules.iter().enumerate() {
        let name = match rule.get("name").and_then(Value::as_str) {
            Some(name) => format!("rule {name:?}"),
            None => format!("rule at index {index}"),
        };
        let Some(rps) = rule.get("rps").and_then(Value::as_f64) else {
            return Err(Failure::bad_data(format!("{name} has no numeric \"rps\"")));
        };
        // Every u64 limit a person would configure is exact as an f64.
        if rps > max_rps as f64 {
            return Ok(Verdict::deny(format!(
                "{name} allows {rps} requests/s, above the limit of {max_rps}"
            )));
        }
    }
    Ok(Verdict::allow())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: Value) -> Policy {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_rule_above_the_limit_is_denied_by_name_with_both_numbers() {
        let policy = policy(json!({ "rules": [
            { "name": "steady", "rps": 50 },
            { "name": "burst", "rps": 500 },
        ]}));
        assert_eq!(
            check(&policy, 100).unwrap(),
            Verdict::deny(r#"rule "burst" allows 500 requests/s, above the limit of 100"#)
        );
    }

    #[test]
    fn rules_at_the_limit_are_allowed() {
        let policy = policy(json!({ "rules": [{ "name": "steady", "rps": 100 }] }));
        assert_eq!(check(&policy, 100).unwrap(), Verdict::allow());
    }

    #[test]
    fn a_policy_without_rules_is_allowed() {
        assert_eq!(check(&policy(json!({})), 100).unwrap(), Verdict::allow());
    }

    #[test]
    fn a_rule_without_a_numeric_rps_is_bad_data_naming_the_rule() {
        let policy = policy(json!({ "rules": [{ "name": "odd", "rps": "many" }] }));
        let failure = check(&policy, 100).unwrap_err();
        assert_eq!(failure.code, "bad-data");
        assert_eq!(failure.message, r#"rule "odd" has no numeric "rps""#);
    }

    #[test]
    fn a_rule_without_a_name_is_named_by_its_index() {
        let policy = policy(json!({ "rules": [{ "name": "steady", "rps": 1 }, { "rps": 101 }] }));
        assert_eq!(
            check(&policy, 100).unwrap(),
            Verdict::deny("rule at index 1 allows 101 requests/s, above the limit of 100")
        );
    }
}
