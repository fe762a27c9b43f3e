//! Choice rules: the comparison operators (String, Numeric, Boolean,
//! Timestamp; each with its `…Path` form), `StringMatches`, the type tests
//! (`IsNull`, `IsPresent`, `IsNumeric`, `IsString`, `IsBoolean`,
//! `IsTimestamp`) and `And`, `Or`, `Not`.

use std::cmp::Ordering;

use serde_json::Value;

use crate::paths::{self, PathError};

const COMPARISONS: [&str; 24] = [
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "StringMatches",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
    "Variable",
];

/// The operator of a rule: its one key besides `Variable`, `Next`, `Comment`.
fn operator(rule: &serde_json::Map<String, Value>) -> Result<(&str, &Value), String> {
    let ops: Vec<(&String, &Value)> = rule
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment"))
        .collect();
    match ops.as_slice() {
        [(k, v)] => Ok((k.as_str(), v)),
        [] => Err("the rule has no operator".to_string()),
        _ => Err(format!(
            "the rule has several operators: {}",
            ops.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks a rule's shape (at load time); `top` rules carry `Next`.
pub fn check(rule: &Value, top: bool) -> Result<(), String> {
    let obj = rule.as_object().ok_or("a rule must be an object")?;
    let (op, arg) = operator(obj)?;
    match op {
        "And" | "Or" => {
            let list = arg
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("{op} takes a non-empty list of rules"))?;
            list.iter().try_for_each(|r| check(r, false))
        }
        "Not" => check(arg, false),
        _ => {
            let base = op.strip_suffix("Path").unwrap_or(op);
            if !COMPARISONS.contains(&base) || base == "Variable" {
                return Err(format!("unknown operator `{op}`"));
            }
            let var = obj
                .get("Variable")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{op} needs a `Variable`"))?;
            paths::check_path(var).map_err(|e| format!("Variable: {e}"))?;
            if op.ends_with("Path") && op != base {
                let p = arg.as_str().ok_or_else(|| format!("{op} takes a path"))?;
                paths::check_path(p).map_err(|e| format!("{op}: {e}"))?;
            }
            let _ = top;
            Ok(())
        }
    }
}

/// Whether `rule` matches `input`.
pub fn matches(rule: &Value, input: &Value, context: &Value) -> Result<bool, PathError> {
    let obj = rule
        .as_object()
        .ok_or_else(|| PathError("a rule must be an object".to_string()))?;
    let (op, arg) = operator(obj).map_err(PathError)?;
    match op {
        "And" => {
            for r in arg.as_array().into_iter().flatten() {
                if !matches(r, input, context)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        "Or" => {
            for r in arg.as_array().into_iter().flatten() {
                if matches(r, input, context)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        "Not" => Ok(!matches(arg, input, context)?),
        _ => {
            let var = obj.get("Variable").and_then(Value::as_str).unwrap_or("$");
            if op == "IsPresent" {
                return Ok(paths::present(var, input, context) == (arg == &Value::Bool(true)));
            }
            let value = paths::read(var, input, context)?;
            let want = arg == &Value::Bool(true);
            let test = |b: bool| Ok(b == want);
            match op {
                "IsNull" => return test(value.is_null()),
                "IsNumeric" => return test(value.is_number()),
                "IsString" => return test(value.is_string()),
                "IsBoolean" => return test(value.is_boolean()),
                "IsTimestamp" => return test(value.as_str().and_then(timestamp).is_some()),
                _ => {}
            }
            let (base, other) = match op.strip_suffix("Path") {
                Some(base) => (
                    base,
                    paths::read(arg.as_str().unwrap_or("$"), input, context)?,
                ),
                None => (op, arg.clone()),
            };
            Ok(compare(base, &value, &other))
        }
    }
}

fn timestamp(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// A comparison: false when the value has the wrong type (as Step
/// Functions: a rule on a value of another type does not match).
fn compare(op: &str, value: &Value, other: &Value) -> bool {
    let ordering = |o: Option<Ordering>, kind: &str| -> bool {
        let Some(o) = o else { return false };
        match kind {
            "Equals" => o == Ordering::Equal,
            "LessThan" => o == Ordering::Less,
            "GreaterThan" => o == Ordering::Greater,
            "LessThanEquals" => o != Ordering::Greater,
            "GreaterThanEquals" => o != Ordering::Less,
            _ => false,
        }
    };
    if let Some(kind) = op.strip_prefix("String") {
        if kind == "Matches" {
            return match (value.as_str(), other.as_str()) {
                (Some(v), Some(p)) => wildcard(v, p),
                _ => false,
            };
        }
        let o = match (value.as_str(), other.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        };
        return ordering(o, kind);
    }
    if let Some(kind) = op.strip_prefix("Numeric") {
        let o = match (value.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        };
        return ordering(o, kind);
    }
    if let Some(kind) = op.strip_prefix("Timestamp") {
        let o = match (
            value.as_str().and_then(timestamp),
            other.as_str().and_then(timestamp),
        ) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => None,
        };
        return ordering(o, kind);
    }
    if op == "BooleanEquals" {
        return matches!((value.as_bool(), other.as_bool()), (Some(a), Some(b)) if a == b);
    }
    false
}

/// `StringMatches`: `*` matches any run of characters, `\*` a star.
fn wildcard(value: &str, pattern: &str) -> bool {
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(last) = parts.last_mut() {
                        last.push(n);
                    }
                }
            }
            '*' => parts.push(String::new()),
            other => {
                if let Some(last) = parts.last_mut() {
                    last.push(other);
                }
            }
        }
    }
    let regex = format!(
        "^{}$",
        parts
            .iter()
            .map(|p| regex::escape(p))
            .collect::<Vec<_>>()
            .join(".*")
    );
    regex::Regex::new(&regex).is_ok_and(|r| r.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(rule: Value, input: Value) -> bool {
        check(&rule, false).unwrap();
        matches(&rule, &input, &json!({})).unwrap()
    }

    #[test]
    fn comparisons() {
        let input = json!({"s": "abc", "n": 5, "b": true, "t": "2026-01-01T00:00:00Z", "m": 7, "nul": null});
        assert!(m(
            json!({"Variable": "$.s", "StringEquals": "abc"}),
            input.clone()
        ));
        assert!(!m(
            json!({"Variable": "$.s", "StringEquals": "abd"}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.s", "StringLessThan": "abd"}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.s", "StringMatches": "a*c"}),
            input.clone()
        ));
        assert!(!m(
            json!({"Variable": "$.s", "StringMatches": "a\\*c"}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.n", "NumericGreaterThan": 4}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.n", "NumericLessThanEquals": 5}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.n", "NumericLessThanPath": "$.m"}),
            input.clone()
        ));
        assert!(!m(
            json!({"Variable": "$.s", "NumericEquals": 5}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.b", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.t", "TimestampLessThan": "2026-01-01T00:00:01Z"}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.nul", "IsNull": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.none", "IsPresent": false}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.s", "IsPresent": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.n", "IsNumeric": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.s", "IsString": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.t", "IsTimestamp": true}),
            input.clone()
        ));
        assert!(m(
            json!({"Variable": "$.b", "IsBoolean": true}),
            input.clone()
        ));
    }

    #[test]
    fn combinators() {
        let input = json!({"n": 5, "s": "x"});
        let and = json!({"And": [
            {"Variable": "$.n", "NumericEquals": 5},
            {"Not": {"Variable": "$.s", "StringEquals": "y"}}
        ]});
        assert!(m(and, input.clone()));
        let or = json!({"Or": [
            {"Variable": "$.n", "NumericEquals": 6},
            {"Variable": "$.s", "StringEquals": "y"}
        ]});
        assert!(!m(or, input));
    }

    #[test]
    fn refuses_bad_rules() {
        assert!(check(&json!({"Variable": "$.a", "StringEqualz": "x"}), true).is_err());
        assert!(check(&json!({"StringEquals": "x"}), true).is_err());
        assert!(check(&json!({"And": []}), true).is_err());
    }
}
