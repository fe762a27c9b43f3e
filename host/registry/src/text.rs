//! Just enough line-level understanding of block-style YAML to find a
//! worker's entry in a registry file (for error line numbers and for
//! rewriting a component pin without disturbing the rest of the file).

/// One line of a YAML text, split into its parts.
#[derive(Debug, Clone)]
pub(crate) struct Line<'a> {
    /// The line without its line ending.
    pub text: &'a str,
    /// The line ending (`"\n"`, `"\r\n"` or `""` for the last line).
    pub ending: &'a str,
    /// Number of leading spaces.
    pub indent: usize,
}

impl<'a> Line<'a> {
    /// Whether the line is blank or only a comment (or a document marker).
    pub fn is_trivia(&self) -> bool {
        let t = self.text.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    }

    /// The mapping key of the line and what follows its colon, if the line
    /// is `key: …` (plain, single- or double-quoted key).
    pub fn key(&self) -> Option<(String, &'a str)> {
        if self.is_trivia() {
            return None;
        }
        let t = &self.text[self.indent..];
        let (key, rest) = if let Some(inner) = t.strip_prefix('"') {
            let end = inner.find('"')?;
            (inner[..end].to_string(), &inner[end + 1..])
        } else if let Some(inner) = t.strip_prefix('\'') {
            let end = inner.find('\'')?;
            (inner[..end].to_string(), &inner[end + 1..])
        } else {
            if t.starts_with('-') && (t.len() == 1 || t[1..].starts_with(' ')) {
                return None;
            }
            let end = plain_key_end(t)?;
            (t[..end].trim_end().to_string(), &t[end..])
        };
        let rest = rest.trim_start_matches(' ');
        let rest = rest.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            return None;
        }
        Some((key, rest))
    }
}

/// Where a plain key ends: the first `:` followed by a space, a tab or the
/// end of the line.
fn plain_key_end(t: &str) -> Option<usize> {
    let bytes = t.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return None;
        }
        if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            return Some(i);
        }
    }
    None
}

/// Splits a text into lines, keeping each line's ending.
pub(crate) fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, ending, next) = match rest.find('\n') {
            Some(i) => {
                let line = &rest[..i];
                if let Some(stripped) = line.strip_suffix('\r') {
                    (stripped, &rest[i - 1..=i], &rest[i + 1..])
                } else {
                    (line, &rest[i..=i], &rest[i + 1..])
                }
            }
            None => (rest, "", ""),
        };
        let indent = line.len() - line.trim_start_matches(' ').len();
        out.push(Line {
            text: line,
            ending,
            indent,
        });
        rest = next;
    }
    out
}

/// The lines `[start, end)` of a mapping entry: the line of the key and the
/// lines indented deeper than it (trailing trivia excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Index of the key's line.
    pub start: usize,
    /// One past the last line of the entry's value.
    pub end: usize,
    /// Indentation of the key.
    pub indent: usize,
}

/// The entry `key` among the children of the mapping entry `parent`
/// (or among the top-level keys when `parent` is `None`).
pub(crate) fn child(lines: &[Line<'_>], parent: Option<Block>, key: &str) -> Option<Block> {
    let (from, to) = match parent {
        Some(p) => (p.start + 1, p.end),
        None => (0, lines.len()),
    };
    // The children's indentation is that of the first non-trivia line.
    let child_indent = lines[from..to].iter().find(|l| !l.is_trivia())?.indent;
    if let Some(p) = parent {
        if child_indent <= p.indent {
            return None;
        }
    }
    let start = (from..to).find(|&i| {
        lines[i].indent == child_indent && lines[i].key().is_some_and(|(k, _)| k == key)
    })?;
    let mut end = start + 1;
    let mut last_content = start + 1;
    while end < to {
        let l = &lines[end];
        if !l.is_trivia() {
            if l.indent <= child_indent {
                break;
            }
            last_content = end + 1;
        }
        end += 1;
    }
    Some(Block {
        start,
        end: last_content,
        indent: child_indent,
    })
}

/// The 1-based line number of worker `key` in a domain file's text.
pub(crate) fn worker_line(text: &str, key: &str) -> Option<usize> {
    let lines = lines(text);
    let workers = child(&lines, None, "workers")?;
    child(&lines, Some(workers), key).map(|b| b.start + 1)
}

/// Splits `value  # comment` into the value part and the comment part
/// (including the spaces before `#`); the comment part is empty when there
/// is none. Quotes are respected.
pub(crate) fn split_comment(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let mut quote: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                let value = s[..i].trim_end();
                return (value, &s[value.len()..]);
            }
            None => {}
        }
    }
    (s.trim_end(), &s[s.trim_end().len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# header
domain: d
workers:
  # a comment
  first:
    component: { version: 0.1.0 }
    trigger: { invoke: {} }

  \"second\":   # trailing
    component:
      version: 0.1.0
other: 1
";

    #[test]
    fn finds_worker_lines() {
        assert_eq!(worker_line(TEXT, "first"), Some(5));
        assert_eq!(worker_line(TEXT, "second"), Some(9));
        assert_eq!(worker_line(TEXT, "third"), None);
    }

    #[test]
    fn blocks_end_before_the_next_sibling() {
        let lines = lines(TEXT);
        let workers = child(&lines, None, "workers").unwrap();
        let first = child(&lines, Some(workers), "first").unwrap();
        assert_eq!((first.start, first.end, first.indent), (4, 7, 2));
        let second = child(&lines, Some(workers), "second").unwrap();
        let comp = child(&lines, Some(second), "component").unwrap();
        assert_eq!((comp.start, comp.end, comp.indent), (9, 11, 4));
    }

    #[test]
    fn splits_comments_outside_quotes() {
        assert_eq!(split_comment(" 0.1.0  # pin"), (" 0.1.0", "  # pin"));
        assert_eq!(split_comment(" \"a # b\""), (" \"a # b\"", ""));
        assert_eq!(split_comment(" x"), (" x", ""));
    }

    #[test]
    fn keeps_crlf_endings() {
        let ls = lines("a: 1\r\nb: 2");
        assert_eq!(ls[0].text, "a: 1");
        assert_eq!(ls[0].ending, "\r\n");
        assert_eq!(ls[1].ending, "");
    }
}
