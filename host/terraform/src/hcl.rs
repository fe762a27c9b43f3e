//! A small writer of HCL (Terraform's native syntax): blocks, attributes,
//! string literals and JSON values as HCL expressions.

use std::fmt::Write as _;

use serde_json::Value;

/// A quoted HCL string literal. Terraform interpolation (`${`, `%{`) is
/// escaped, so the text is taken literally.
pub fn q(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

/// A quoted HCL template: `${…}` in `text` stays an interpolation (the
/// caller writes it on purpose); only quotes, backslashes and control
/// characters are escaped.
pub fn t(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    push_escaped(&mut out, text, false);
    out.push('"');
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text, true);
    out
}

fn push_escaped(out: &mut String, text: &str, literal: bool) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if literal && chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A list of expressions, on one line.
pub fn list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A JSON value as an HCL expression (objects as `{ "key" = value }`),
/// pretty-printed from `indent`. `replace` may substitute a string value
/// with an expression (e.g. a workflow task's `${domain/worker}` with the
/// function's ARN); other strings are literals.
pub fn json_expr(value: &Value, indent: usize, replace: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    write_json(&mut out, value, indent, replace);
    out
}

fn write_json(
    out: &mut String,
    value: &Value,
    indent: usize,
    replace: &dyn Fn(&str) -> Option<String>,
) {
    let pad = "  ".repeat(indent + 1);
    let close = "  ".repeat(indent);
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => match replace(s) {
            Some(expr) => out.push_str(&expr),
            None => out.push_str(&q(s)),
        },
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for item in items {
                out.push_str(&pad);
                write_json(out, item, indent + 1, replace);
                out.push_str(",\n");
            }
            out.push_str(&close);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (k, v) in map {
                out.push_str(&pad);
                out.push_str(&q(k));
                out.push_str(" = ");
                write_json(out, v, indent + 1, replace);
                out.push('\n');
            }
            out.push_str(&close);
            out.push('}');
        }
    }
}

/// Writes blocks and attributes with Terraform's two-space indentation.
#[derive(Default)]
pub struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    /// A new, empty file.
    pub fn new() -> Writer {
        Writer::default()
    }

    fn pad(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    /// A `#` comment, one line per line of `text`.
    pub fn comment(&mut self, text: &str) -> &mut Self {
        for line in text.lines() {
            self.pad();
            if line.is_empty() {
                self.out.push_str("#\n");
            } else {
                let _ = writeln!(self.out, "# {line}");
            }
        }
        self
    }

    /// A checkov skip, with its reason (checkov reads `#checkov:skip=ID:reason`).
    pub fn skip(&mut self, id: &str, reason: &str) -> &mut Self {
        self.pad();
        let _ = writeln!(self.out, "#checkov:skip={id}:{reason}");
        self
    }

    /// Opens a block: `kind "label" "label" {`.
    pub fn open(&mut self, kind: &str, labels: &[&str]) -> &mut Self {
        self.pad();
        self.out.push_str(kind);
        for l in labels {
            let _ = write!(self.out, " {}", q(l));
        }
        self.out.push_str(" {\n");
        self.depth += 1;
        self
    }

    /// Closes the innermost block.
    pub fn close(&mut self) -> &mut Self {
        self.depth = self.depth.saturating_sub(1);
        self.pad();
        self.out.push_str("}\n");
        self
    }

    /// `name = expr` (the expression as written).
    pub fn attr(&mut self, name: &str, expr: impl AsRef<str>) -> &mut Self {
        self.pad();
        let _ = writeln!(self.out, "{name} = {}", expr.as_ref());
        self
    }

    /// `name = "literal"`.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.attr(name, q(value))
    }

    /// `name = jsonencode(<value>)`, pretty-printed.
    pub fn json(&mut self, name: &str, value: &Value) -> &mut Self {
        let expr = json_expr(value, self.depth, &|_| None);
        self.attr(name, format!("jsonencode({expr})"))
    }

    /// An empty line.
    pub fn blank(&mut self) -> &mut Self {
        self.out.push('\n');
        self
    }

    /// The current indentation depth.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_escape_interpolation_quotes_and_controls() {
        assert_eq!(q("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(q("${x} %{y} $z"), r#""$${x} %%{y} $z""#);
        assert_eq!(q("l1\nl2\u{8}"), r#""l1\nl2\u0008""#);
        assert_eq!(t("${var.prefix}x\""), r#""${var.prefix}x\"""#);
    }

    #[test]
    fn json_values_become_hcl_objects_with_replacements() {
        let v = json!({"Resource": "${a/b}", "e": {}, "l": ["x", true, null], "n": 1});
        let expr = json_expr(&v, 0, &|s| {
            (s == "${a/b}").then(|| "aws_lambda_function.a_b.arn".to_string())
        });
        assert_eq!(
            expr,
            "{\n  \"Resource\" = aws_lambda_function.a_b.arn\n  \"e\" = {}\n  \"l\" = [\n    \"x\",\n    true,\n    null,\n  ]\n  \"n\" = 1\n}"
        );
    }

    #[test]
    fn blocks_nest_with_two_spaces() {
        let mut w = Writer::new();
        w.open("resource", &["aws_sqs_queue", "q"]).str("name", "x");
        w.open("tags", &[]).close();
        w.close();
        assert_eq!(
            w.finish(),
            "resource \"aws_sqs_queue\" \"q\" {\n  name = \"x\"\n  tags {\n  }\n}\n"
        );
    }
}
