//! The input and output processing of Amazon States Language: JSONPath
//! reads (`InputPath`, `OutputPath`, `ItemsPath`, a Choice rule's
//! `Variable`, a `.$` field), reference paths written into (`ResultPath`),
//! payload templates (`Parameters`, `ItemSelector`, `ResultSelector`) with
//! the context object (`$$.`) and the intrinsic functions.
//!
//! Reads go through `serde_json_path` (RFC 9535 JSONPath); a path with a
//! wildcard, a filter, a slice, a union or a descent selects a list (as
//! Step Functions answers an array for them), any other path exactly one
//! value.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

/// Why a path, a template or an intrinsic function could not be applied:
/// a `States.Runtime` error of the state (no retrier or catcher other than
/// one naming `States.Runtime` takes it, as in Step Functions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

fn err(message: impl Into<String>) -> PathError {
    PathError(message.into())
}

/// Whether a JSONPath selects a list rather than one value.
fn indefinite(path: &str) -> bool {
    path.contains('*')
        || path.contains("..")
        || path.contains('?')
        || path.contains(',')
        || path.contains(':')
}

/// Checks a JSONPath's syntax (at load time).
pub fn check_path(path: &str) -> Result<(), PathError> {
    let path = path
        .strip_prefix('$')
        .map(|p| p.strip_prefix('$').unwrap_or(p));
    match path {
        Some(rest) => JsonPath::parse(&format!("${rest}"))
            .map(|_| ())
            .map_err(|e| err(format!("invalid JSONPath: {e}"))),
        None => Err(err("a path must start with `$`")),
    }
}

/// Reads `path` in `input`, or in `context` for a path starting with `$$`.
pub fn read(path: &str, input: &Value, context: &Value) -> Result<Value, PathError> {
    let (doc, path) = match path.strip_prefix("$$") {
        Some(rest) => (context, format!("${rest}")),
        None => (input, path.to_string()),
    };
    if path == "$" {
        return Ok(doc.clone());
    }
    let parsed =
        JsonPath::parse(&path).map_err(|e| err(format!("invalid JSONPath `{path}`: {e}")))?;
    let nodes = parsed.query(doc).all();
    if indefinite(&path) {
        return Ok(Value::Array(nodes.into_iter().cloned().collect()));
    }
    match nodes.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(err(format!(
            "the JSONPath `{path}` could not be found in the input {}",
            abbreviate(doc)
        ))),
        _ => Ok(Value::Array(nodes.into_iter().cloned().collect())),
    }
}

/// Whether `path` selects something in `input` (a Choice rule's `IsPresent`).
pub fn present(path: &str, input: &Value, context: &Value) -> bool {
    read(path, input, context).is_ok_and(|v| !(indefinite(path) && v == Value::Array(vec![])))
}

/// A JSON document cut to 200 characters for an error message.
pub fn abbreviate(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= 200 {
        text
    } else {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// Parses a reference path: `$`, `$.a.b`, `$['a b']`, `$.a[0]`.
fn reference(path: &str) -> Result<Vec<Step>, PathError> {
    let bad = || {
        err(format!(
            "`{path}` is not a reference path (`$`, `$.field`, `$['field']`, `$.list[0]`)"
        ))
    };
    let mut rest = path.strip_prefix('$').ok_or_else(bad)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(bad)?;
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            let index = r[..end].parse::<usize>().map_err(|_| bad())?;
            steps.push(Step::Index(index));
            rest = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    Ok(steps)
}

/// Checks a reference path's syntax (at load time).
pub fn check_reference(path: &str) -> Result<(), PathError> {
    reference(path).map(|_| ())
}

/// `ResultPath`: `result` placed into `input` at `path` (`None`: the
/// `null` ResultPath, the input unchanged; `$`: the result alone). Missing
/// fields on the way are created; a field on the way that is not an object
/// is an error.
pub fn place(input: Value, path: Option<&str>, result: Value) -> Result<Value, PathError> {
    let Some(path) = path else {
        return Ok(input);
    };
    let steps = reference(path)?;
    if steps.is_empty() {
        return Ok(result);
    }
    let mut doc = input;
    let mut at = &mut doc;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        match step {
            Step::Field(name) => {
                if at.is_null() {
                    *at = Value::Object(Map::new());
                }
                let Value::Object(map) = at else {
                    return Err(err(format!(
                        "ResultPath `{path}`: `{name}` cannot be set in a {}",
                        kind(at)
                    )));
                };
                if last {
                    map.insert(name.clone(), result);
                    return Ok(doc);
                }
                at = map.entry(name.clone()).or_insert(Value::Null);
            }
            Step::Index(index) => {
                let Value::Array(list) = at else {
                    return Err(err(format!(
                        "ResultPath `{path}`: [{index}] of a {}",
                        kind(at)
                    )));
                };
                let len = list.len();
                let Some(slot) = list.get_mut(*index) else {
                    return Err(err(format!(
                        "ResultPath `{path}`: [{index}] of a list of {len}"
                    )));
                };
                if last {
                    *slot = result;
                    return Ok(doc);
                }
                at = slot;
            }
        }
    }
    Ok(doc)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A payload template (`Parameters`, `ItemSelector`, `ResultSelector`)
/// applied to `input`: a field whose name ends in `.$` takes the value of
/// its path (or of its intrinsic function), the others are copied; nested
/// objects and lists are templates too.
pub fn template(t: &Value, input: &Value, context: &Value) -> Result<Value, PathError> {
    match t {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (name, value) in fields {
                match name.strip_suffix(".$") {
                    Some(field) => {
                        let Value::String(expr) = value else {
                            return Err(err(format!(
                                "`{name}`: a field ending in `.$` takes a path or an intrinsic function, not {value}"
                            )));
                        };
                        let v = expression(expr, input, context)
                            .map_err(|e| err(format!("`{name}`: {e}")))?;
                        out.insert(field.to_string(), v);
                    }
                    None => {
                        out.insert(name.clone(), template(value, input, context)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|i| template(i, input, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Checks the `.$` fields of a template (at load time): paths parse,
/// intrinsic functions are known and parse.
pub fn check_template(t: &Value) -> Result<(), PathError> {
    match t {
        Value::Object(fields) => {
            for (name, value) in fields {
                if name.ends_with(".$") {
                    let Value::String(expr) = value else {
                        return Err(err(format!("`{name}` must be a string")));
                    };
                    if expr.starts_with('$') {
                        check_path(expr).map_err(|e| err(format!("`{name}`: {e}")))?;
                    } else {
                        Parser::new(expr)
                            .call()
                            .map_err(|e| err(format!("`{name}`: {e}")))?;
                    }
                } else {
                    check_template(value)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_template),
        _ => Ok(()),
    }
}

/// A `.$` field's value: a path, or an intrinsic function.
fn expression(expr: &str, input: &Value, context: &Value) -> Result<Value, PathError> {
    if expr.starts_with('$') {
        read(expr, input, context)
    } else {
        let call = Parser::new(expr).call()?;
        call.eval(input, context)
    }
}

/// An argument of an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(String),
    Call(Call),
}

/// An intrinsic function call: `States.Format('{} of {}', $.a, $.b)`.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    name: String,
    args: Vec<Arg>,
}

/// The intrinsic functions the interpreter knows.
pub const INTRINSICS: [&str; 10] = [
    "States.Format",
    "States.Array",
    "States.ArrayLength",
    "States.ArrayGetItem",
    "States.ArrayContains",
    "States.StringToJson",
    "States.JsonToString",
    "States.MathAdd",
    "States.UUID",
    "States.JsonMerge",
];

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn fail(&self, what: &str) -> PathError {
        err(format!(
            "intrinsic function `{}`: {what} at character {}",
            self.text, self.at
        ))
    }

    /// The whole text as one call.
    fn call(mut self) -> Result<Call, PathError> {
        let call = self.one_call()?;
        self.skip_spaces();
        if !self.rest().is_empty() {
            return Err(self.fail("unexpected text after the call"));
        }
        Ok(call)
    }

    fn one_call(&mut self) -> Result<Call, PathError> {
        self.skip_spaces();
        let rest = self.rest();
        let end = rest
            .find('(')
            .ok_or_else(|| self.fail("expected `States.Name(`"))?;
        let name = rest[..end].trim().to_string();
        if !INTRINSICS.contains(&name.as_str()) {
            return Err(self.fail(&format!(
                "unknown function `{name}` (known: {})",
                INTRINSICS.join(", ")
            )));
        }
        self.at += end + 1;
        let mut args = Vec::new();
        loop {
            self.skip_spaces();
            if let Some(r) = self.rest().strip_prefix(')') {
                self.at = self.text.len() - r.len();
                break;
            }
            if !args.is_empty() {
                let Some(r) = self.rest().strip_prefix(',') else {
                    return Err(self.fail("expected `,` or `)`"));
                };
                self.at = self.text.len() - r.len();
                self.skip_spaces();
            }
            args.push(self.arg()?);
        }
        Ok(Call { name, args })
    }

    fn arg(&mut self) -> Result<Arg, PathError> {
        let rest = self.rest();
        if let Some(r) = rest.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = r.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => return Err(self.fail("unfinished escape")),
                    },
                    '\'' => {
                        self.at += 1 + i + 1;
                        return Ok(Arg::Literal(Value::String(out)));
                    }
                    other => out.push(other),
                }
            }
            return Err(self.fail("unfinished string"));
        }
        if rest.starts_with('$') {
            let end = rest.find([',', ')', ' ']).unwrap_or(rest.len());
            let path = rest[..end].to_string();
            check_path(&path)?;
            self.at += end;
            return Ok(Arg::Path(path));
        }
        if rest.starts_with("States.") {
            return self.one_call().map(Arg::Call);
        }
        let end = rest.find([',', ')', ' ']).unwrap_or(rest.len());
        let word = &rest[..end];
        let value: Value = serde_json::from_str(word)
            .map_err(|_| self.fail(&format!("`{word}` is not a literal")))?;
        self.at += end;
        Ok(Arg::Literal(value))
    }
}

impl Call {
    fn eval(&self, input: &Value, context: &Value) -> Result<Value, PathError> {
        let args = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Literal(v) => Ok(v.clone()),
                Arg::Path(p) => read(p, input, context),
                Arg::Call(c) => c.eval(input, context),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = self.name.as_str();
        let bad = |what: &str| err(format!("{name}: {what}"));
        let count = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad(&format!("takes {n} argument(s), got {}", args.len())))
            }
        };
        match name {
            "States.Format" => {
                let Some(Value::String(format)) = args.first() else {
                    return Err(bad("the first argument must be a string"));
                };
                let mut out = String::new();
                let mut values = args[1..].iter();
                let mut pieces = format.split("{}").peekable();
                while let Some(piece) = pieces.next() {
                    out.push_str(piece);
                    if pieces.peek().is_some() {
                        match values.next() {
                            Some(Value::String(s)) => out.push_str(s),
                            Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                                out.push_str(&v.to_string())
                            }
                            Some(_) => {
                                return Err(bad(
                                    "arguments must be strings, numbers, booleans or null",
                                ))
                            }
                            None => return Err(bad("more `{}` than arguments")),
                        }
                    }
                }
                if values.next().is_some() {
                    return Err(bad("more arguments than `{}`"));
                }
                Ok(Value::String(out))
            }
            "States.Array" => Ok(Value::Array(args)),
            "States.ArrayLength" => {
                count(1)?;
                match &args[0] {
                    Value::Array(a) => Ok(Value::from(a.len())),
                    _ => Err(bad("the argument must be a list")),
                }
            }
            "States.ArrayGetItem" => {
                count(2)?;
                match (&args[0], args[1].as_u64()) {
                    (Value::Array(a), Some(i)) => usize::try_from(i)
                        .ok()
                        .and_then(|i| a.get(i))
                        .cloned()
                        .ok_or_else(|| bad("index out of range")),
                    _ => Err(bad("takes a list and an index")),
                }
            }
            "States.ArrayContains" => {
                count(2)?;
                match &args[0] {
                    Value::Array(a) => Ok(Value::Bool(a.contains(&args[1]))),
                    _ => Err(bad("the first argument must be a list")),
                }
            }
            "States.StringToJson" => {
                count(1)?;
                match &args[0] {
                    Value::String(s) => {
                        serde_json::from_str(s).map_err(|e| bad(&format!("not JSON: {e}")))
                    }
                    _ => Err(bad("the argument must be a string")),
                }
            }
            "States.JsonToString" => {
                count(1)?;
                Ok(Value::String(args[0].to_string()))
            }
            "States.MathAdd" => {
                count(2)?;
                match (args[0].as_i64(), args[1].as_i64()) {
                    (Some(a), Some(b)) => a
                        .checked_add(b)
                        .map(Value::from)
                        .ok_or_else(|| bad("overflow")),
                    _ => Err(bad("takes two integers")),
                }
            }
            "States.UUID" => {
                count(0)?;
                Ok(Value::String(uuid::Uuid::new_v4().to_string()))
            }
            "States.JsonMerge" => {
                count(3)?;
                match (&args[0], &args[1], &args[2]) {
                    (Value::Object(a), Value::Object(b), Value::Bool(false)) => {
                        let mut out = a.clone();
                        for (k, v) in b {
                            out.insert(k.clone(), v.clone());
                        }
                        Ok(Value::Object(out))
                    }
                    _ => Err(bad("takes two objects and false (a shallow merge)")),
                }
            }
            other => Err(bad(&format!("unknown function {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_definite_and_indefinite_paths() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "c": "x"});
        let ctx = json!({"Map": {"Item": {"Index": 2}}});
        assert_eq!(read("$", &doc, &ctx).unwrap(), doc);
        assert_eq!(read("$.a.b[1]", &doc, &ctx).unwrap(), json!(2));
        assert_eq!(read("$.a.b[*]", &doc, &ctx).unwrap(), json!([1, 2, 3]));
        assert_eq!(read("$$.Map.Item.Index", &doc, &ctx).unwrap(), json!(2));
        let missing = read("$.nope", &doc, &ctx).unwrap_err();
        assert!(missing.0.contains("$.nope"), "{missing}");
        assert!(present("$.c", &doc, &ctx));
        assert!(!present("$.d", &doc, &ctx));
    }

    #[test]
    fn places_results() {
        let input = json!({"a": 1});
        assert_eq!(place(input.clone(), None, json!(2)).unwrap(), input);
        assert_eq!(place(input.clone(), Some("$"), json!(2)).unwrap(), json!(2));
        assert_eq!(
            place(input.clone(), Some("$.r.s"), json!(2)).unwrap(),
            json!({"a": 1, "r": {"s": 2}})
        );
        assert_eq!(
            place(json!({"l": [0, 1]}), Some("$.l[1]"), json!(9)).unwrap(),
            json!({"l": [0, 9]})
        );
        assert!(place(input, Some("$.a.b"), json!(2)).is_err());
        assert!(check_reference("$.a[*]").is_err());
    }

    #[test]
    fn templates_and_intrinsics() {
        let input = json!({"name": "m1", "n": 3, "list": ["a", "b"], "doc": "{\"k\":1}"});
        let ctx = json!({"Execution": {"Id": "e1"}});
        let t = json!({
            "fixed": {"x": 1},
            "name.$": "$.name",
            "exec.$": "$$.Execution.Id",
            "text.$": "States.Format('market {} has {} items', $.name, $.n)",
            "arr.$": "States.Array($.name, 'two', 3)",
            "len.$": "States.ArrayLength($.list)",
            "item.$": "States.ArrayGetItem($.list, 1)",
            "sum.$": "States.MathAdd($.n, -1)",
            "json.$": "States.StringToJson($.doc)",
            "str.$": "States.JsonToString($.list)",
            "nested.$": "States.Format('{}!', States.ArrayGetItem($.list, 0))",
        });
        check_template(&t).unwrap();
        let out = template(&t, &input, &ctx).unwrap();
        assert_eq!(
            out,
            json!({
                "fixed": {"x": 1},
                "name": "m1",
                "exec": "e1",
                "text": "market m1 has 3 items",
                "arr": ["m1", "two", 3],
                "len": 2,
                "item": "b",
                "sum": 2,
                "json": {"k": 1},
                "str": "[\"a\",\"b\"]",
                "nested": "a!",
            })
        );
        assert!(check_template(&json!({"x.$": "States.Nope(1)"})).is_err());
        assert!(template(&json!({"x.$": "$.missing"}), &input, &ctx).is_err());
    }
}
