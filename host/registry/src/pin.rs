//! Rewriting a worker's component pin in place (`just build-components`).

use std::path::{Path, PathBuf};

use crate::error::RegistryError;
use crate::load::RESOURCES_FILES;
use crate::text::{self, split_comment, Block, Line};

/// Sets `component.version` and `component.sha256` of worker `worker_key`
/// (the key under `workers:`, without the domain) in the domain file
/// `file`, editing only those lines so the rest of the file keeps its text
/// and comments. The digest may carry a `sha256:` prefix; it is written as
/// quoted lowercase hex.
///
/// Both the flow style (`component: { name: …, version: …, sha256: … }` on
/// one line) and the block style (one key per line) are handled; a missing
/// `version` or `sha256` key is added. The file is replaced atomically.
///
/// Returns whether the file changed (`false` when it already had this pin).
pub fn set_component_pin(
    file: &Path,
    worker_key: &str,
    version: &semver::Version,
    sha256: &str,
) -> Result<bool, RegistryError> {
    let err = |message: String| RegistryError::Worker {
        file: file.to_path_buf(),
        worker: worker_key.to_string(),
        line: None,
        message,
    };
    let hex = sha256.strip_prefix("sha256:").unwrap_or(sha256);
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(err(format!(
            "cannot pin `{sha256}`: not a SHA-256 digest (expected 64 hex characters)"
        )));
    }
    let hex = hex.to_ascii_lowercase();
    let io = |source| RegistryError::Io {
        path: file.to_path_buf(),
        source,
    };
    let original = std::fs::read_to_string(file).map_err(io)?;

    if current_pin(&original, worker_key).map_err(&err)? == (version.to_string(), hex.clone()) {
        return Ok(false);
    }

    let updated = rewrite(&original, worker_key, &version.to_string(), &hex).map_err(&err)?;
    let after = current_pin(&updated, worker_key).map_err(|m| {
        err(format!(
            "the edited file would not read back ({m}); edit component: by hand"
        ))
    })?;
    if after != (version.to_string(), hex) {
        return Err(err(
            "the edited file does not read back with the new pin; edit component: by hand".into(),
        ));
    }
    if updated == original {
        return Ok(false);
    }
    write_atomically(file, &updated).map_err(io)?;
    Ok(true)
}

/// The file and worker key that define worker `name` (`<domain>/<key>`) in
/// the registry directory `dir`, found by reading each domain file's
/// `domain:` and `workers:` (the files are not otherwise validated).
pub fn locate_worker(dir: &Path, name: &str) -> Result<(PathBuf, String), RegistryError> {
    let io = |source| RegistryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if (file_name.ends_with(".yaml") || file_name.ends_with(".yml"))
            && !file_name.starts_with('.')
            && !RESOURCES_FILES.contains(&file_name)
            && path.is_file()
        {
            files.push(path);
        }
    }
    files.sort();
    let mut known = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| RegistryError::Io {
            path: file.clone(),
            source,
        })?;
        let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let Some(domain) = value.get("domain").and_then(|d| d.as_str()) else {
            continue;
        };
        let Some(workers) = value.get("workers").and_then(|w| w.as_mapping()) else {
            continue;
        };
        for key in workers.keys().filter_map(|k| k.as_str()) {
            let full = format!("{domain}/{key}");
            if full == name {
                return Ok((file, key.to_string()));
            }
            known.push(full);
        }
    }
    known.sort();
    Err(RegistryError::UnknownWorker {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        known,
    })
}

/// The (version, sha256) currently pinned for the worker, as strings
/// (sha256 lowercased, without prefix).
fn current_pin(text: &str, worker_key: &str) -> Result<(String, String), String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("the file does not parse: {e}"))?;
    let component = value
        .get("workers")
        .and_then(|w| w.get(worker_key))
        .ok_or_else(|| "no such worker under workers:".to_string())?
        .get("component")
        .ok_or_else(|| "the worker has no component:".to_string())?;
    let scalar = |key: &str| -> String {
        match component.get(key) {
            Some(serde_yaml::Value::String(s)) => s.clone(),
            Some(serde_yaml::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let sha = scalar("sha256");
    let sha = sha
        .strip_prefix("sha256:")
        .unwrap_or(&sha)
        .to_ascii_lowercase();
    Ok((scalar("version"), sha))
}

fn rewrite(text: &str, worker_key: &str, version: &str, hex: &str) -> Result<String, String> {
    let lines = text::lines(text);
    let workers =
        text::child(&lines, None, "workers").ok_or("no block-style `workers:` mapping found")?;
    let worker = text::child(&lines, Some(workers), worker_key).ok_or(
        "the worker's entry was not found under workers: (flow-style mappings are not edited)",
    )?;
    let component = text::child(&lines, Some(worker), "component")
        .ok_or("the worker has no block-style component: entry")?;
    let new_values = [
        ("version", version.to_string()),
        ("sha256", format!("\"{hex}\"")),
    ];

    let component_line = &lines[component.start];
    let (_, rest) = component_line
        .key()
        .ok_or("the component: line could not be read")?;
    let (value, comment) = split_comment(rest);

    let mut out: Vec<String> = lines.iter().map(|l| l.text.to_string()).collect();
    let mut inserted: Vec<(usize, String)> = Vec::new();

    if value.trim().starts_with('{') {
        let prefix = &component_line.text[..component_line.text.len() - rest.len()];
        let flow = rewrite_flow(value.trim(), &new_values)?;
        out[component.start] = format!("{prefix} {flow}{comment}");
    } else if value.trim().is_empty() {
        rewrite_block(&lines, component, &new_values, &mut out, &mut inserted)?;
    } else {
        return Err(format!(
            "component: has the value `{}`; expected a mapping",
            value.trim()
        ));
    }

    let newline = lines
        .iter()
        .map(|l| l.ending)
        .find(|e| !e.is_empty())
        .unwrap_or("\n");
    let mut result = String::with_capacity(text.len() + 128);
    for (i, line) in lines.iter().enumerate() {
        result.push_str(&out[i]);
        for (_, extra) in inserted.iter().filter(|(after, _)| *after == i) {
            result.push_str(newline);
            result.push_str(extra);
        }
        result.push_str(line.ending);
    }
    Ok(result)
}

fn rewrite_block(
    lines: &[Line<'_>],
    component: Block,
    new_values: &[(&str, String)],
    out: &mut [String],
    inserted: &mut Vec<(usize, String)>,
) -> Result<(), String> {
    let child_indent = lines[component.start + 1..component.end]
        .iter()
        .find(|l| !l.is_trivia())
        .map(|l| l.indent)
        .unwrap_or(component.indent + 2);
    for (key, new_value) in new_values {
        match text::child(lines, Some(component), key) {
            Some(entry) => {
                let line = &lines[entry.start];
                let (_, rest) = line.key().ok_or("a component line could not be read")?;
                let (value, comment) = split_comment(rest);
                if value.trim().is_empty() || entry.end > entry.start + 1 {
                    return Err(format!("component.{key} is not a one-line scalar"));
                }
                let prefix = &line.text[..line.text.len() - rest.len()];
                out[entry.start] = format!("{prefix} {new_value}{comment}");
            }
            None => {
                let after = component.end.saturating_sub(1).max(component.start);
                inserted.push((
                    after,
                    format!("{}{key}: {new_value}", " ".repeat(child_indent)),
                ));
            }
        }
    }
    Ok(())
}

/// Rewrites `{ name: x, version: y, sha256: z }` with new values for the
/// given keys (added at the end when absent), keeping the other entries.
fn rewrite_flow(flow: &str, new_values: &[(&str, String)]) -> Result<String, String> {
    let inner = flow
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("component: is a flow mapping that spans several lines; edit it by hand")?;
    let padded = inner.starts_with(' ');
    let mut entries: Vec<String> = split_flow_entries(inner)
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    for (key, new_value) in new_values {
        let found = entries.iter_mut().find(|e| {
            e.split_once(':')
                .is_some_and(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\'') == *key)
        });
        match found {
            Some(entry) => *entry = format!("{key}: {new_value}"),
            None => entries.push(format!("{key}: {new_value}")),
        }
    }
    let body = entries.join(", ");
    Ok(if padded {
        format!("{{ {body} }}")
    } else {
        format!("{{{body}}}")
    })
}

/// Splits the inside of a flow mapping at top-level commas.
fn split_flow_entries(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '{' | '[' => depth += 1,
                '}' | ']' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    parts.push(&inner[start..]);
    parts
}

fn write_atomically(file: &Path, contents: &str) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or_else(|| Path::new("."));
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("registry.yaml");
    let tmp = dir.join(format!(".{name}.{}.pin-tmp", std::process::id()));
    let result = (|| {
        std::fs::write(&tmp, contents)?;
        if let Ok(meta) = std::fs::metadata(file) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
