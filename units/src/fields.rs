//! Typed reads of single values out of the positioned tree, each reporting
//! its own diagnostic (at the value) and returning `None` when the value is
//! unusable, so that validation goes on and finds the other problems too.

use std::path::PathBuf;
use std::time::Duration;

use crate::diag::{did_you_mean, Diagnostic, Loc};
use crate::raw::{Entry, Node, Table, Value};
use crate::values::{self, Ident, ValueError};
use crate::Signal;

pub(crate) const DURATION_HINT: &str =
    "write a number and a unit (us, ms, s, m, h, d), e.g. \"1m30s\"";
const SIZE_HINT: &str =
    "write bytes, or a number with K, M, G or T (powers of 1024), or \"infinity\"";

/// Collects the diagnostics of one unit.
pub(crate) struct Ctx<'a> {
    pub unit: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(crate) fn error(&mut self, loc: &Loc, message: String, hint: Option<String>) {
        let d = Diagnostic::error(loc, Some(self.unit), message).with_opt_hint(hint);
        self.diags.push(d);
    }

    pub(crate) fn warn(&mut self, loc: &Loc, message: String, hint: Option<String>) {
        let d = Diagnostic::warning(loc, Some(self.unit), message).with_opt_hint(hint);
        self.diags.push(d);
    }

    pub(crate) fn wrong_type(
        &mut self,
        key: &str,
        node: &Node,
        expected: &str,
        hint: Option<String>,
    ) {
        let message = format!("`{key}` must be {expected}, not {}", node.value.kind());
        self.error(&node.loc, message, hint);
    }

    fn bad_value(&mut self, key: &str, node: &Node, what: &str, text: &str, e: &ValueError) {
        let hint = match (what, e) {
            ("duration", _) => Some(DURATION_HINT.to_owned()),
            ("size", _) => Some(SIZE_HINT.to_owned()),
            ("signal", _) => Some(
                match did_you_mean(text.trim_start_matches("SIG"), Signal::names()) {
                    Some(s) => format!("did you mean \"SIG{s}\"?"),
                    None => "write a name such as \"SIGTERM\" or a number".to_owned(),
                },
            ),
            ("address", _) => Some("write IP:PORT, e.g. \"127.0.0.1:2379\"".to_owned()),
            ("URL", ValueError::NotHttp) => Some("probes speak plain HTTP only".to_owned()),
            ("URL", _) => Some("write e.g. \"http://127.0.0.1:2379/health\"".to_owned()),
            ("mode", _) => Some("write the mode in octal, e.g. \"0022\"".to_owned()),
            _ => None,
        };
        let message = format!("invalid {what} \"{text}\" for `{key}`: {e}");
        self.error(&node.loc, message, hint);
    }

    /// Reports every key of `table` that is not in `known`, with a guess.
    pub(crate) fn unknown_keys(&mut self, prefix: &str, table: &Table, known: &[&str]) {
        for entry in &table.entries {
            if known.contains(&entry.key.as_str()) {
                continue;
            }
            let hint = crate::validate::guess_key(prefix, &entry.key, known);
            let message = format!("unknown key `{prefix}{}`", entry.key);
            self.error(&entry.key_loc, message, hint);
        }
    }

    pub(crate) fn str<'n>(&mut self, key: &str, node: &'n Node) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                let hint = quote_hint(node);
                self.wrong_type(key, node, "a string", hint);
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, key: &str, node: &Node) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" || s == "false" => {
                let hint = Some(format!("write {} = {s}, without quotes", last(key)));
                self.wrong_type(key, node, "a boolean", hint);
                None
            }
            _ => {
                self.wrong_type(key, node, "a boolean (true or false)", None);
                None
            }
        }
    }

    /// An array of strings; each element that is not one is reported.
    pub(crate) fn strings<'n>(
        &mut self,
        key: &str,
        node: &'n Node,
    ) -> Option<Vec<(&'n str, &'n Loc)>> {
        let Value::Array(items) = &node.value else {
            let hint = match &node.value {
                Value::Str(s) => Some(format!("write {key} = [\"{s}\"]")),
                _ => None,
            };
            self.wrong_type(key, node, "an array of strings", hint);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match &item.value {
                Value::Str(s) => out.push((s.as_str(), &item.loc)),
                _ => {
                    let message = format!("`{key}` must hold strings, not {}", item.value.kind());
                    let hint = quote_hint(item);
                    self.error(&item.loc, message, hint);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// One of `choices`, given as a string.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &str,
        node: &Node,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = self.str(key, node)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*v);
        }
        let names = choices.iter().map(|(n, _)| *n);
        let hint = match did_you_mean(text, names.clone()) {
            Some(guess) => format!("did you mean \"{guess}\"?"),
            None => {
                let list: Vec<String> = names.map(|n| format!("\"{n}\"")).collect();
                format!("expected one of {}", list.join(", "))
            }
        };
        self.error(
            &node.loc,
            format!("invalid value \"{text}\" for `{key}`"),
            Some(hint),
        );
        None
    }

    pub(crate) fn duration(&mut self, key: &str, node: &Node) -> Option<Duration> {
        match &node.value {
            Value::Str(s) => match values::parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.bad_value(key, node, "duration", s, &e);
                    None
                }
            },
            Value::Int(n) => {
                let hint = Some(format!(
                    "a number alone has no unit: write \"{n}s\" or \"{n}ms\""
                ));
                self.wrong_type(key, node, "a duration string", hint);
                None
            }
            _ => {
                self.wrong_type(
                    key,
                    node,
                    "a duration string",
                    Some(DURATION_HINT.to_owned()),
                );
                None
            }
        }
    }

    /// A duration that may also be `"infinity"` (`Some(None)`).
    pub(crate) fn duration_or_infinity(
        &mut self,
        key: &str,
        node: &Node,
    ) -> Option<Option<Duration>> {
        if matches!(&node.value, Value::Str(s) if s == "infinity") {
            return Some(None);
        }
        self.duration(key, node).map(Some)
    }

    /// A size in bytes, from an integer or a string; `Some(None)` is "infinity".
    pub(crate) fn size(&mut self, key: &str, node: &Node) -> Option<Option<u64>> {
        match &node.value {
            Value::Int(n) => match u64::try_from(*n) {
                Ok(n) => Some(Some(n)),
                Err(_) => {
                    self.error(&node.loc, format!("`{key}` cannot be negative"), None);
                    None
                }
            },
            Value::Str(s) => match values::parse_size(s) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.bad_value(key, node, "size", s, &e);
                    None
                }
            },
            _ => {
                self.wrong_type(key, node, "a size", Some(SIZE_HINT.to_owned()));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn int(&mut self, key: &str, node: &Node, min: i64, max: i64) -> Option<i64> {
        match &node.value {
            Value::Int(n) if (min..=max).contains(n) => Some(*n),
            Value::Int(n) => {
                let message = if max == i64::MAX {
                    format!("`{key}` must be at least {min}, not {n}")
                } else {
                    format!("`{key}` must be between {min} and {max}, not {n}")
                };
                self.error(&node.loc, message, None);
                None
            }
            Value::Str(s) if s.parse::<i64>().is_ok() => {
                let hint = Some(format!("write {} = {s}, without quotes", last(key)));
                self.wrong_type(key, node, "an integer", hint);
                None
            }
            _ => {
                self.wrong_type(key, node, "an integer", None);
                None
            }
        }
    }

    pub(crate) fn signal(&mut self, key: &str, node: &Node) -> Option<Signal> {
        let parsed = match &node.value {
            Value::Int(n) => i32::try_from(*n).ok().and_then(Signal::from_number),
            Value::Str(s) => match Signal::parse(s) {
                Ok(sig) => Some(sig),
                Err(e) => {
                    self.bad_value(key, node, "signal", s, &e);
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, node, "a signal name or number", None);
                return None;
            }
        };
        if parsed.is_none() {
            self.error(
                &node.loc,
                format!("`{key}` is not a signal number (1 to 64)"),
                None,
            );
        }
        parsed
    }

    pub(crate) fn ident(&mut self, key: &str, node: &Node) -> Option<Ident> {
        match &node.value {
            Value::Int(n) => match u32::try_from(*n) {
                Ok(id) if id != u32::MAX => Some(Ident::Id(id)),
                _ => {
                    self.error(&node.loc, format!("`{key}` is not a valid id: {n}"), None);
                    None
                }
            },
            Value::Str(s) => match Ident::parse(s) {
                Ok(i) => Some(i),
                Err(e) => {
                    self.bad_value(key, node, "name", s, &e);
                    None
                }
            },
            _ => {
                self.wrong_type(key, node, "a name or a numeric id", None);
                None
            }
        }
    }

    pub(crate) fn absolute_path(&mut self, key: &str, node: &Node) -> Option<PathBuf> {
        let text = self.str(key, node)?;
        if !text.starts_with('/') || text.contains('\0') {
            let message = format!("`{key}` must be an absolute path, not \"{text}\"");
            self.error(&node.loc, message, None);
            return None;
        }
        Some(PathBuf::from(text))
    }

    /// A command line: non-empty, absolute program path, no NUL bytes.
    pub(crate) fn argv(&mut self, key: &str, node: &Node) -> Option<Vec<String>> {
        if let Value::Str(s) = &node.value {
            let words: Vec<String> = s.split_whitespace().map(|w| format!("\"{w}\"")).collect();
            let hint = Some(format!("write {key} = [{}]", words.join(", ")));
            self.wrong_type(key, node, "an array of strings", hint);
            return None;
        }
        let items = self.strings(key, node)?;
        let Some(&(program, loc)) = items.first() else {
            let hint = Some("name the program to run, by its absolute path".to_owned());
            self.error(&node.loc, format!("`{key}` is empty"), hint);
            return None;
        };
        let mut ok = true;
        if !program.starts_with('/') {
            let message = format!("`{key}` must start with an absolute path, not \"{program}\"");
            let base = program
                .rsplit('/')
                .next()
                .filter(|b| !b.is_empty())
                .unwrap_or("program");
            let hint = Some(format!(
                "keel does not search PATH: write the full path, e.g. \"/usr/bin/{base}\""
            ));
            self.error(loc, message, hint);
            ok = false;
        }
        for (arg, loc) in &items {
            if arg.contains('\0') {
                self.error(
                    loc,
                    format!("`{key}` arguments cannot contain NUL bytes"),
                    None,
                );
                ok = false;
            }
        }
        ok.then(|| items.iter().map(|(s, _)| (*s).to_owned()).collect())
    }

    pub(crate) fn parsed<T>(
        &mut self,
        key: &str,
        node: &Node,
        what: &str,
        parse: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let text = self.str(key, node)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.bad_value(key, node, what, text, &e);
                None
            }
        }
    }
}

/// `burst` for `start-limit.burst`: what the user typed in the table.
fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// For a number or boolean where a string was expected: quote it.
fn quote_hint(node: &Node) -> Option<String> {
    let text = match &node.value {
        Value::Int(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    Some(format!("quote it: \"{text}\""))
}

/// The entry's table, or a type error.
pub(crate) fn table<'n>(
    ctx: &mut Ctx<'_>,
    key: &str,
    entry: &'n Entry,
    hint: Option<String>,
) -> Option<&'n Table> {
    match &entry.node.value {
        Value::Table(t) => Some(t),
        _ => {
            ctx.wrong_type(key, &entry.node, "a table", hint);
            None
        }
    }
}
