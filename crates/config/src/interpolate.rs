//! `${NAME}`, `${NAME:-default}` and `$$` in string values.
//!
//! Runs on parsed values, never on the text, so a variable can never inject TOML syntax and keys are never
//! expanded. One pass, no recursion: an expanded value or a default is used as it is. A `$` followed by
//! anything other than `{` or `$` is kept literally, so most passwords containing `$` need no escaping.

use std::borrow::Cow;

use toml::Value;

use crate::spans::KeyPath;

/// Looks a variable up; `None` means unset. Tests pass a map, the real loader the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    Unset(String),
    Malformed(&'static str),
}

/// Expands every string inside `value` (arrays and tables included); on failure, returns the path of the
/// offending string so the caller can point at its line.
pub(crate) fn value(value: &mut Value, path: &mut KeyPath, env: Env) -> Result<(), (KeyPath, ExpandError)> {
    match value {
        Value::String(s) => {
            if let Cow::Owned(expanded) = expand(s, env).map_err(|e| (path.clone(), e))? {
                *s = expanded;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_index(i);
                self::value(item, path, env)?;
                path.pop();
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push_key(key);
                self::value(item, path, env)?;
                path.pop();
            }
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {}
    }
    Ok(())
}

/// Expands one string. Borrows when there is nothing to expand.
pub(crate) fn expand<'s>(s: &'s str, env: Env) -> Result<Cow<'s, str>, ExpandError> {
    if !s.contains('$') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Malformed("an unclosed ${"))?;
            out.push_str(&lookup(&tail[..end], env)?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The inside of `${…}`: `NAME` or `NAME:-default`. Unset, or empty with a default, takes the default.
fn lookup(inner: &str, env: Env) -> Result<String, ExpandError> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !is_variable_name(name) {
        return Err(ExpandError::Malformed("an invalid variable name"));
    }
    match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(ExpandError::Unset(name.to_owned())),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn run(s: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
        let env = env_of(pairs);
        expand(s, &|name| env.get(name).cloned()).map(Cow::into_owned)
    }

    #[test]
    fn set_variables_are_substituted() {
        let vars = [("USER", "app"), ("HOST", "db")];
        assert_eq!(run("postgresql://${USER}@${HOST}:5432/${USER}", &vars).unwrap(), "postgresql://app@db:5432/app");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(run("${PORT:-5432}", &[]).unwrap(), "5432");
        assert_eq!(run("${PORT:-5432}", &[("PORT", "")]).unwrap(), "5432");
        assert_eq!(run("${PORT:-5432}", &[("PORT", "6543")]).unwrap(), "6543");
        assert_eq!(run("${EMPTY:-}", &[]).unwrap(), "");
        assert_eq!(run("${PORT}", &[("PORT", "")]).unwrap(), "", "set but empty, without default, is empty");
    }

    #[test]
    fn dollars_are_literal_unless_they_start_a_reference() {
        assert_eq!(run("$${HOME}", &[("HOME", "/root")]).unwrap(), "${HOME}");
        assert_eq!(run("a$$b", &[]).unwrap(), "a$b");
        assert_eq!(run("pa$word$", &[]).unwrap(), "pa$word$");
        assert_eq!(run("no dollars", &[]).unwrap(), "no dollars");
    }

    #[test]
    fn expansion_is_one_pass() {
        assert_eq!(run("${A}", &[("A", "${B}"), ("B", "x")]).unwrap(), "${B}");
        assert_eq!(run("${A:-${B}", &[]).unwrap(), "${B", "a default ends at the first }}");
    }

    #[test]
    fn errors_name_the_variable_or_the_problem() {
        assert_eq!(run("x${MISSING}y", &[]), Err(ExpandError::Unset("MISSING".into())));
        assert_eq!(run("${OPEN", &[]), Err(ExpandError::Malformed("an unclosed ${")));
        assert_eq!(run("${1ABC}", &[]), Err(ExpandError::Malformed("an invalid variable name")));
        assert_eq!(run("${}", &[]), Err(ExpandError::Malformed("an invalid variable name")));
    }

    #[test]
    fn nested_values_are_expanded_and_errors_carry_the_path() {
        let env = env_of(&[("A", "1")]);
        let env = |name: &str| env.get(name).cloned();
        let mut v: Value = toml::from_str::<toml::Table>(
            r#"list = ["${A}", { deep = ["x${A}", 7] }]
               table = { inner = { s = "$${A}" } }"#,
        )
        .unwrap()
        .into();
        value(&mut v, &mut KeyPath::default(), &env).unwrap();
        assert_eq!(v["list"][0].as_str(), Some("1"));
        assert_eq!(v["list"][1]["deep"][0].as_str(), Some("x1"));
        assert_eq!(v["list"][1]["deep"][1].as_integer(), Some(7));
        assert_eq!(v["table"]["inner"]["s"].as_str(), Some("${A}"));

        let mut v: Value = toml::from_str::<toml::Table>(r#"t = { a = [1, { b = "${NOPE}" }] }"#).unwrap().into();
        let (path, err) = value(&mut v, &mut KeyPath::default(), &env).unwrap_err();
        assert_eq!(path.to_string(), "t.a[1].b");
        assert_eq!(err, ExpandError::Unset("NOPE".into()));
    }
}
