//! A unit file as TOML wrote it: a tree of values where every key and every
//! value knows its file, line and column. Validation walks this tree by hand
//! (rather than through `#[derive(Deserialize)]`) so that it can report every
//! problem at once, each at its exact position, instead of stopping at the first.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::diag::{Diagnostic, LineIndex, Loc};

/// A value with its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub loc: Loc,
    pub value: Value,
}

/// The TOML value kinds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    /// The kind of value, with its article, for "must be X, not Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A table: its entries in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

/// `key = value`, both positioned.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub node: Node,
}

impl Table {
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Applies a drop-in: each of its keys replaces ours, except that the
    /// tables named in `merge_tables` merge one level deeper, key by key.
    pub(crate) fn merge(&mut self, overlay: Table, merge_tables: &[&str]) {
        for entry in overlay.entries {
            let mine = self.entries.iter_mut().find(|e| e.key == entry.key);
            match mine {
                None => self.entries.push(entry),
                Some(mine) => match (&mut mine.node.value, entry.node.value) {
                    (Value::Table(base), Value::Table(over))
                        if merge_tables.contains(&entry.key.as_str()) =>
                    {
                        base.merge(over, &[]);
                    }
                    (_, value) => {
                        mine.key_loc = entry.key_loc;
                        mine.node = Node {
                            loc: entry.node.loc,
                            value,
                        };
                    }
                },
            }
        }
    }
}

/// Parses `text` (the contents of `file`) into a positioned table, or the
/// TOML syntax error as a diagnostic.
pub(crate) fn parse(file: &Arc<Path>, text: &str, unit: &str) -> Result<Table, Diagnostic> {
    let index = LineIndex::new(file.clone(), text);
    match toml_edit::ImDocument::parse(text) {
        Ok(doc) => Ok(from_table(doc.as_table(), &index, &index.loc(0))),
        Err(e) => {
            let loc = index.loc(e.span().map_or(0, |s| s.start));
            let message = e.message().trim().replace('\n', " ");
            Err(Diagnostic::error(
                &loc,
                Some(unit),
                format!("invalid TOML: {message}"),
            ))
        }
    }
}

/// Where `span` starts, or `fallback` where the parser has none (implicit
/// tables, the parents of dotted keys).
fn loc_of(span: Option<Range<usize>>, index: &LineIndex<'_>, fallback: &Loc) -> Loc {
    span.map_or_else(|| fallback.clone(), |s| index.loc(s.start))
}

/// A table's entries in file order. Tables and inline tables each have
/// their own walk: one over `&dyn toml_edit::TableLike` links every method
/// of both vtables into keel (20 KB, measured).
fn from_table(t: &toml_edit::Table, index: &LineIndex<'_>, parent: &Loc) -> Table {
    sorted(t.iter().filter_map(|(key, item)| {
        let key_loc = loc_of(t.key(key).and_then(toml_edit::Key::span), index, parent);
        let node = from_item(item, index, &key_loc)?;
        Some(Entry {
            key: key.to_owned(),
            key_loc,
            node,
        })
    }))
}

fn from_inline(t: &toml_edit::InlineTable, index: &LineIndex<'_>, parent: &Loc) -> Table {
    sorted(t.iter().map(|(key, value)| {
        let key_loc = loc_of(t.key(key).and_then(toml_edit::Key::span), index, parent);
        let node = from_value(value, index, &key_loc);
        Entry {
            key: key.to_owned(),
            key_loc,
            node,
        }
    }))
}

/// The entries, ordered by where their keys are written.
fn sorted(entries: impl Iterator<Item = Entry>) -> Table {
    let mut entries: Vec<Entry> = entries.collect();
    entries.sort_by(|a, b| a.key_loc.cmp(&b.key_loc));
    Table { entries }
}

fn from_item(item: &toml_edit::Item, index: &LineIndex<'_>, fallback: &Loc) -> Option<Node> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(from_value(v, index, fallback)),
        toml_edit::Item::Table(t) => {
            let loc = loc_of(t.span(), index, fallback);
            let value = Value::Table(from_table(t, index, &loc));
            Some(Node { loc, value })
        }
        toml_edit::Item::ArrayOfTables(a) => {
            let loc = loc_of(a.span(), index, fallback);
            let tables = a
                .iter()
                .map(|t| {
                    let at = loc_of(t.span(), index, &loc);
                    let value = Value::Table(from_table(t, index, &at));
                    Node { loc: at, value }
                })
                .collect();
            Some(Node {
                loc,
                value: Value::Array(tables),
            })
        }
    }
}

fn from_value(v: &toml_edit::Value, index: &LineIndex<'_>, fallback: &Loc) -> Node {
    use toml_edit::Value as V;
    let loc = loc_of(v.span(), index, fallback);
    let value = match v {
        V::String(s) => Value::Str(s.value().clone()),
        V::Integer(i) => Value::Int(*i.value()),
        V::Float(f) => Value::Float(*f.value()),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(_) => Value::Datetime,
        V::Array(a) => Value::Array(a.iter().map(|x| from_value(x, index, &loc)).collect()),
        V::InlineTable(t) => Value::Table(from_inline(t, index, &loc)),
    };
    Node { loc, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Table {
        parse(&Arc::from(Path::new("t.toml")), text, "t").unwrap()
    }

    fn pos(loc: &Loc) -> (usize, usize) {
        (loc.line, loc.col)
    }

    #[test]
    fn keys_and_values_have_positions() {
        let t = parse_ok("a = 1\n  b = [\"x\", \"y\"]\n[c]\nd = 1979-05-27\n");
        let b = t.get("b").unwrap();
        assert_eq!(pos(&b.key_loc), (2, 3));
        assert_eq!(pos(&b.node.loc), (2, 7));
        let Value::Array(items) = &b.node.value else {
            panic!()
        };
        assert_eq!(pos(&items[1].loc), (2, 13));
        let Value::Table(c) = &t.get("c").unwrap().node.value else {
            panic!()
        };
        let d = c.get("d").unwrap();
        assert_eq!(pos(&d.key_loc), (4, 1));
        assert!(matches!(d.node.value, Value::Datetime));
    }

    #[test]
    fn dotted_keys_and_inline_tables() {
        let t = parse_ok("limits.memory-max = \"1G\"\nready = { tcp = \"1.2.3.4:5\" }\n");
        let Value::Table(l) = &t.get("limits").unwrap().node.value else {
            panic!()
        };
        let m = l.get("memory-max").unwrap();
        assert_eq!(pos(&m.key_loc), (1, 8));
        assert_eq!(pos(&m.node.loc), (1, 21));
        let Value::Table(r) = &t.get("ready").unwrap().node.value else {
            panic!()
        };
        assert_eq!(pos(&r.get("tcp").unwrap().node.loc), (2, 17));
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let e = parse(&Arc::from(Path::new("t.toml")), "a = 1\nb = \n", "t").unwrap_err();
        assert_eq!((e.line, e.col), (2, 5));
        assert!(e.message.starts_with("invalid TOML: "), "{}", e.message);
    }

    #[test]
    fn merge_replaces_keys_and_merges_named_tables() {
        let mut base = parse_ok("exec = [\"/a\"]\nenvironment = { A = \"1\", B = \"2\" }\n");
        let over = parse_ok("exec = [\"/b\"]\nenvironment = { B = \"3\" }\n");
        base.merge(over, &["environment"]);
        let Value::Table(env) = &base.get("environment").unwrap().node.value else {
            panic!()
        };
        assert_eq!(env.entries.len(), 2);
        let Value::Array(exec) = &base.get("exec").unwrap().node.value else {
            panic!()
        };
        assert!(matches!(&exec[0].value, Value::Str(s) if s == "/b"));
    }
}
