//! Reading the TOML tree: environment overrides, `${VAR}` substitution, and
//! deserialisation that reports errors and unknown keys by their path.
//!
//! herald reads TOML with the `toml` crate rather than `config`: `extra_fields`
//! are wire data whose key order and case must survive, and every error must
//! name the exact field, which needs the tree as written.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use toml::Value;

use super::{ConfigError, Errors};

/// Applies `HERALD__SECTION__KEY=value` variables to the tree. A value replacing
/// a string stays a string; otherwise it is read as a TOML value when it parses.
pub fn apply_env_overrides(root: &mut toml::Table, vars: &HashMap<String, String>) {
    let mut keys: Vec<&String> = vars.keys().filter(|k| k.starts_with("HERALD__")).collect();
    keys.sort();
    for key in keys {
        let segments: Vec<String> = key["HERALD__".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            continue;
        }
        set_path(root, &segments, &vars[key]);
    }
}

fn set_path(root: &mut toml::Table, segments: &[String], raw: &str) {
    let mut wrapped = Value::Table(std::mem::take(root));
    set_in(&mut wrapped, segments, raw);
    if let Value::Table(t) = wrapped {
        *root = t;
    }
}

fn set_in(node: &mut Value, segments: &[String], raw: &str) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        let new_value = |existing: Option<&Value>| match existing {
            Some(Value::String(_)) => Value::String(raw.to_string()),
            _ => parse_scalar(raw),
        };
        match node {
            Value::Table(t) => {
                let v = new_value(t.get(first));
                t.insert(first.clone(), v);
            }
            Value::Array(a) => {
                if let Some(slot) = first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    *slot = new_value(Some(slot));
                }
            }
            _ => {}
        }
        return;
    }
    let child = match node {
        Value::Table(t) => t
            .entry(first.clone())
            .or_insert_with(|| Value::Table(toml::Table::new())),
        Value::Array(a) => match first.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(v) => v,
            None => return,
        },
        _ => return,
    };
    set_in(child, rest, raw);
}

fn parse_scalar(raw: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Replaces `${NAME}` in every string value with the environment variable;
/// `$${` stands for a literal `${`.
pub fn substitute_env(
    value: &mut Value,
    path: &str,
    vars: &HashMap<String, String>,
    errs: &mut Errors,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand(s, vars) {
            Ok(v) => *s = v,
            Err(name) => errs.push(path, format!("environment variable {name} is not set")),
        },
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                substitute_env(v, &format!("{path}[{i}]"), vars, errs);
            }
        }
        Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                substitute_env(v, &join(path, k), vars, errs);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `a.b`, or `b` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A deserialised value and the keys the target type did not know (relative paths).
pub struct Parsed<T> {
    pub value: T,
    pub ignored: Vec<String>,
}

/// Deserialises `value` as `T`, recording a type error under its full path.
pub fn field<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errs: &mut Errors,
) -> Option<Parsed<T>> {
    let mut ignored = Vec::new();
    let result = {
        let mut record = |p: serde_ignored::Path<'_>| ignored.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    match result {
        Ok(value) => Some(Parsed { value, ignored }),
        Err(e) => {
            let mut at = path.to_string();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => {
                        at.push_str(&format!("[{index}]"))
                    }
                    serde_path_to_error::Segment::Map { key } => at = join(&at, key),
                    serde_path_to_error::Segment::Enum { variant } => at = join(&at, variant),
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            let msg = e.into_inner().to_string();
            // toml appends "in `key`" on a second line; the path says that already.
            errs.list
                .push(describe(at, msg.lines().next().unwrap_or("").trim()));
            None
        }
    }
}

/// Deserialises a section whose unknown keys are errors.
pub fn section<T: DeserializeOwned>(value: Value, path: &str, errs: &mut Errors) -> Option<T> {
    let parsed = field::<T>(value, path, errs)?;
    for key in parsed.ignored {
        errs.push(&join(path, &key), "unknown key");
    }
    Some(parsed.value)
}

/// Serde says "missing field `x`" at the parent; name the field itself.
fn describe(at: String, msg: &str) -> ConfigError {
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(name) = rest.strip_suffix('`') {
            return ConfigError {
                path: join(&at, name),
                message: "is required".into(),
            };
        }
    }
    ConfigError {
        path: if at.is_empty() { "(root)".into() } else { at },
        message: msg.to_string(),
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_env_and_keeps_escaped() {
        let v = vars(&[("TOKEN", "abc")]);
        assert_eq!(expand("Bearer ${TOKEN}!", &v).unwrap(), "Bearer abc!");
        assert_eq!(expand("$${TOKEN}", &v).unwrap(), "${TOKEN}");
        assert_eq!(expand("${NOPE}", &v).unwrap_err(), "NOPE");
    }

    #[test]
    fn overrides_sections_and_keeps_string_type() {
        let mut root: toml::Table =
            toml::from_str("[kafka]\ngroup_id = \"x\"\n[[destinations]]\nname = \"a\"\n").unwrap();
        apply_env_overrides(
            &mut root,
            &vars(&[
                ("HERALD__KAFKA__GROUP_ID", "123"),
                ("HERALD__KAFKA__MAX_IN_FLIGHT", "7"),
                ("HERALD__DESTINATIONS__0__NAME", "b"),
                ("HERALD__LOG__FORMAT", "json"),
            ]),
        );
        assert_eq!(root["kafka"]["group_id"].as_str(), Some("123"));
        assert_eq!(root["kafka"]["max_in_flight"].as_integer(), Some(7));
        assert_eq!(root["destinations"][0]["name"].as_str(), Some("b"));
        assert_eq!(root["log"]["format"].as_str(), Some("json"));
    }
}
