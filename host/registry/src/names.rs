//! Name rules shared by workers, domains and resources.

/// Checks a resource, domain or worker-key name: not empty, at most 128
/// characters, only ASCII letters, digits, `-`, `_` and `.`, and not
/// starting with `.`.
pub(crate) fn check_resource_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 128 {
        return Err(format!("the name `{name}` is longer than 128 characters"));
    }
    if name.starts_with('.') {
        return Err(format!("the name `{name}` starts with `.`"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the name `{name}` contains `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Checks a component name: one or more `/`-separated parts, each a valid
/// resource name.
pub(crate) fn check_component_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the component name is empty".into());
    }
    for part in name.split('/') {
        check_resource_name(part).map_err(|m| format!("component name `{name}`: {m}"))?;
    }
    Ok(())
}
