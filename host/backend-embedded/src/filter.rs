//! SNS subscription filter policies over message attributes.
//!
//! A policy is a JSON object from attribute name to the values it accepts:
//! every key must match (AND), and a key matches when any of its values does
//! (OR). A value is one of
//! - a string (exact match) or a number (numeric equality),
//! - `{"prefix": "ab"}`, `{"suffix": "yz"}`, `{"equals-ignore-case": "Ab"}`,
//! - `{"anything-but": X}` with X a string, a number, a list of them, or
//!   `{"prefix": ..}` / `{"suffix": ..}` (the attribute must be present),
//! - `{"exists": true|false}`,
//! - `{"numeric": [">", 0, "<=", 5]}` (one or two comparisons).
//!
//! A single value stands for a list of one. Attribute-based filtering only:
//! nested (message-body) policies are refused when the policy is parsed.

use serde_json::Value;

/// A parsed filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    rules: Vec<(String, Vec<Matcher>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(String),
    Number(f64),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Matcher>),
    Exists(bool),
    Numeric(Vec<(Cmp, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl FilterPolicy {
    /// Parses a policy, explaining what is wrong with one it cannot use.
    pub fn parse(policy: &Value) -> Result<FilterPolicy, String> {
        let Value::Object(map) = policy else {
            return Err("a filter policy must be a JSON object".into());
        };
        let mut rules = Vec::with_capacity(map.len());
        for (name, accepted) in map {
            let alternatives = match accepted {
                Value::Array(items) if items.is_empty() => {
                    return Err(format!("attribute `{name}`: the list of values is empty"))
                }
                Value::Array(items) => items
                    .iter()
                    .map(|v| parse_matcher(v).map_err(|m| format!("attribute `{name}`: {m}")))
                    .collect::<Result<Vec<_>, _>>()?,
                single => {
                    vec![parse_matcher(single).map_err(|m| format!("attribute `{name}`: {m}"))?]
                }
            };
            rules.push((name.clone(), alternatives));
        }
        Ok(FilterPolicy { rules })
    }

    /// Whether a message with these attributes passes the policy.
    pub fn matches(&self, attributes: &[(String, String)]) -> bool {
        self.rules.iter().all(|(name, alternatives)| {
            let value = attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            alternatives.iter().any(|m| m.matches(value))
        })
    }
}

fn string_of(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`{what}` takes a string"))
}

fn parse_matcher(v: &Value) -> Result<Matcher, String> {
    match v {
        Value::String(s) => Ok(Matcher::Exact(s.clone())),
        Value::Number(n) => n
            .as_f64()
            .map(Matcher::Number)
            .ok_or_else(|| format!("number {n} is out of range")),
        Value::Bool(b) => Ok(Matcher::Exact(b.to_string())),
        Value::Object(op) if op.len() == 1 => {
            let Some((name, arg)) = op.iter().next() else {
                return Err("an empty operator object".into());
            };
            match name.as_str() {
                "prefix" => Ok(Matcher::Prefix(string_of(arg, name)?)),
                "suffix" => Ok(Matcher::Suffix(string_of(arg, name)?)),
                "equals-ignore-case" => Ok(Matcher::EqualsIgnoreCase(string_of(arg, name)?)),
                "exists" => arg
                    .as_bool()
                    .map(Matcher::Exists)
                    .ok_or_else(|| "`exists` takes true or false".to_string()),
                "anything-but" => parse_anything_but(arg),
                "numeric" => parse_numeric(arg),
                other => Err(format!("unsupported filter operator `{other}`")),
            }
        }
        Value::Object(_) => Err(
            "an operator object has exactly one key (nested message-body policies are not supported)"
                .into(),
        ),
        Value::Null => Err("null is not a supported attribute value".into()),
        Value::Array(_) => Err("a list of values may not hold another list".into()),
    }
}

fn parse_anything_but(arg: &Value) -> Result<Matcher, String> {
    let inner = match arg {
        Value::String(_) | Value::Number(_) => vec![parse_matcher(arg)?],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(_) | Value::Number(_) => parse_matcher(v),
                _ => Err("`anything-but` lists strings or numbers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Object(op)
            if op.len() == 1 && (op.contains_key("prefix") || op.contains_key("suffix")) =>
        {
            vec![parse_matcher(arg)?]
        }
        _ => {
            return Err(
                "`anything-but` takes a string, a number, a list of them, or {\"prefix\": ..}"
                    .into(),
            )
        }
    };
    Ok(Matcher::AnythingBut(inner))
}

fn parse_numeric(arg: &Value) -> Result<Matcher, String> {
    let bad = || "`numeric` takes [op, number] or [op, number, op, number]".to_string();
    let Value::Array(items) = arg else {
        return Err(bad());
    };
    if items.len() != 2 && items.len() != 4 {
        return Err(bad());
    }
    let mut conds = Vec::new();
    for pair in items.chunks(2) {
        let op = match pair[0].as_str() {
            Some("=") => Cmp::Eq,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            _ => return Err(bad()),
        };
        let n = pair[1].as_f64().ok_or_else(bad)?;
        conds.push((op, n));
    }
    Ok(Matcher::Numeric(conds))
}

impl Matcher {
    fn matches(&self, value: Option<&str>) -> bool {
        if let Matcher::Exists(wanted) = self {
            return value.is_some() == *wanted;
        }
        let Some(v) = value else {
            return false;
        };
        match self {
            Matcher::Exact(s) => v == s,
            Matcher::Number(n) => v.trim().parse::<f64>().ok() == Some(*n),
            Matcher::Prefix(p) => v.starts_with(p.as_str()),
            Matcher::Suffix(s) => v.ends_with(s.as_str()),
            Matcher::EqualsIgnoreCase(s) => v.to_lowercase() == s.to_lowercase(),
            Matcher::AnythingBut(list) => !list.iter().any(|m| m.matches(Some(v))),
            Matcher::Exists(_) => true,
            Matcher::Numeric(conds) => match v.trim().parse::<f64>() {
                Ok(x) => conds.iter().all(|(op, n)| match op {
                    Cmp::Eq => x == *n,
                    Cmp::Lt => x < *n,
                    Cmp::Le => x <= *n,
                    Cmp::Gt => x > *n,
                    Cmp::Ge => x >= *n,
                }),
                Err(_) => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(v: Value) -> FilterPolicy {
        FilterPolicy::parse(&v).expect("valid policy")
    }

    #[test]
    fn exact_values_are_or_keys_are_and() {
        let p = policy(json!({"type": ["CAMPAIGN", "MARKET"], "env": ["prd"]}));
        assert!(p.matches(&attrs(&[("type", "MARKET"), ("env", "prd")])));
        assert!(!p.matches(&attrs(&[("type", "MARKET"), ("env", "qa")])));
        assert!(!p.matches(&attrs(&[("type", "REGISTRATION"), ("env", "prd")])));
        assert!(!p.matches(&attrs(&[("type", "MARKET")])));
    }

    #[test]
    fn single_value_stands_for_a_list() {
        let p = policy(json!({"type": "CAMPAIGN"}));
        assert!(p.matches(&attrs(&[("type", "CAMPAIGN")])));
        assert!(!p.matches(&attrs(&[("type", "campaign")])));
    }

    #[test]
    fn prefix_suffix_and_ignore_case() {
        let p = policy(
            json!({"k": [{"prefix": "reg-"}, {"suffix": ".csv"}, {"equals-ignore-case": "ABC"}]}),
        );
        assert!(p.matches(&attrs(&[("k", "reg-1")])));
        assert!(p.matches(&attrs(&[("k", "x.csv")])));
        assert!(p.matches(&attrs(&[("k", "aBc")])));
        assert!(!p.matches(&attrs(&[("k", "other")])));
    }

    #[test]
    fn anything_but() {
        let p = policy(json!({"type": [{"anything-but": ["A", "B"]}]}));
        assert!(p.matches(&attrs(&[("type", "C")])));
        assert!(!p.matches(&attrs(&[("type", "A")])));
        assert!(!p.matches(&attrs(&[])), "anything-but needs the attribute");
        let p = policy(json!({"type": [{"anything-but": {"prefix": "test-"}}]}));
        assert!(p.matches(&attrs(&[("type", "prod-1")])));
        assert!(!p.matches(&attrs(&[("type", "test-1")])));
    }

    #[test]
    fn exists() {
        let yes = policy(json!({"trace": [{"exists": true}]}));
        let no = policy(json!({"trace": [{"exists": false}]}));
        assert!(yes.matches(&attrs(&[("trace", "1")])));
        assert!(!yes.matches(&attrs(&[])));
        assert!(no.matches(&attrs(&[])));
        assert!(!no.matches(&attrs(&[("trace", "1")])));
    }

    #[test]
    fn numbers() {
        let p = policy(json!({"n": [{"numeric": [">", 0, "<=", 5]}], "m": [3]}));
        assert!(p.matches(&attrs(&[("n", "5"), ("m", "3.0")])));
        assert!(!p.matches(&attrs(&[("n", "0"), ("m", "3")])));
        assert!(!p.matches(&attrs(&[("n", "x"), ("m", "3")])));
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            json!([]),
            json!({"a": []}),
            json!({"a": [{"unknown-op": 1}]}),
            json!({"a": [{"prefix": 1}]}),
            json!({"a": {"nested": ["x"]}}),
            json!({"a": [{"numeric": [">"]}]}),
        ] {
            assert!(
                FilterPolicy::parse(&bad).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
