//! A unit file as TOML wrote it: a tree of values where every key and every
//! value knows its file, line and column. Validation walks this tree by hand
//! (rather than through `#[derive(Deserialize)]`) so that it can report every
//! problem at once, each at its exact position, instead of stopping at the first.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_spanned::__unstable as spanned;

use crate::diag::{Diagnostic, LineIndex, Loc};

/// The field name toml uses when it hands a date-time to `deserialize_any`.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

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
    match toml::from_str::<RawNode>(text) {
        Ok(RawNode {
            value: RawValue::Table(entries),
            ..
        }) => Ok(convert_table(entries, &index, &index.loc(0))),
        Ok(_) => Err(Diagnostic::error(
            &index.loc(0),
            Some(unit),
            "expected a table",
        )),
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

fn convert_table(entries: Vec<(RawKey, RawNode)>, index: &LineIndex<'_>, parent: &Loc) -> Table {
    let mut out = Table {
        entries: entries
            .into_iter()
            .map(|(key, node)| {
                let key_loc = key
                    .span
                    .map_or_else(|| parent.clone(), |s| index.loc(s.start));
                let node = convert(node, index, &key_loc);
                Entry {
                    key: key.name,
                    key_loc,
                    node,
                }
            })
            .collect(),
    };
    out.entries.sort_by(|a, b| a.key_loc.cmp(&b.key_loc));
    out
}

/// `fallback` positions values toml gives no span (implicit tables).
fn convert(node: RawNode, index: &LineIndex<'_>, fallback: &Loc) -> Node {
    let loc = node
        .span
        .map_or_else(|| fallback.clone(), |s| index.loc(s.start));
    let value = match node.value {
        RawValue::Str(s) => Value::Str(s),
        RawValue::Int(i) => Value::Int(i),
        RawValue::Float(f) => Value::Float(f),
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Datetime => Value::Datetime,
        RawValue::Array(items) => {
            Value::Array(items.into_iter().map(|n| convert(n, index, &loc)).collect())
        }
        RawValue::Table(entries) => Value::Table(convert_table(entries, index, &loc)),
    };
    Node { loc, value }
}

/// A value with the byte span toml gave it, if any.
struct RawNode {
    span: Option<Range<usize>>,
    value: RawValue,
}

enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<RawNode>),
    Table(Vec<(RawKey, RawNode)>),
}

struct RawKey {
    name: String,
    span: Option<Range<usize>>,
}

const SPANNED_FIELDS: [&str; 3] = [
    spanned::START_FIELD,
    spanned::END_FIELD,
    spanned::VALUE_FIELD,
];

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawNode, D::Error> {
        // Asking for a spanned struct makes toml hand us {start, end, value};
        // a deserializer that has no span answers with the plain value.
        d.deserialize_struct(
            spanned::NAME,
            &SPANNED_FIELDS,
            NodeVisitor { spanned: true },
        )
    }
}

/// The value inside a spanned wrapper: asked for plainly, so that toml does
/// not wrap it again.
struct PlainValue(RawValue);

impl<'de> Deserialize<'de> for PlainValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PlainValue, D::Error> {
        d.deserialize_any(NodeVisitor { spanned: false })
            .map(|n| PlainValue(n.value))
    }
}

struct NodeVisitor {
    spanned: bool,
}

fn plain(value: RawValue) -> RawNode {
    RawNode { span: None, value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(plain(RawValue::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(plain(RawValue::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(|v| plain(RawValue::Int(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(plain(RawValue::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(plain(RawValue::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(plain(RawValue::Str(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(plain(RawValue::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        let Some(first) = map.next_key::<RawKey>()? else {
            return Ok(plain(RawValue::Table(entries)));
        };
        // Field names of toml's own wrappers come without a span; a user's
        // key of the same spelling always has one.
        if first.span.is_none() {
            if self.spanned && first.name == spanned::START_FIELD {
                return visit_spanned(map);
            }
            if first.name == DATETIME_FIELD {
                map.next_value::<String>()?;
                return Ok(plain(RawValue::Datetime));
            }
        }
        entries.push((first, map.next_value::<RawNode>()?));
        while let Some(key) = map.next_key::<RawKey>()? {
            entries.push((key, map.next_value::<RawNode>()?));
        }
        Ok(plain(RawValue::Table(entries)))
    }
}

/// The rest of `{start, end, value}` once `start` has been read as a key.
fn visit_spanned<'de, A: MapAccess<'de>>(mut map: A) -> Result<RawNode, A::Error> {
    let start: usize = map.next_value()?;
    let mut end = start;
    let mut value = None;
    while let Some(key) = map.next_key::<RawKey>()? {
        match key.name.as_str() {
            spanned::END_FIELD => end = map.next_value()?,
            spanned::VALUE_FIELD => value = Some(map.next_value::<PlainValue>()?.0),
            _ => return Err(de::Error::custom("unexpected field in a spanned value")),
        }
    }
    let value = value.ok_or_else(|| de::Error::missing_field(spanned::VALUE_FIELD))?;
    Ok(RawNode {
        span: Some(start..end.max(start)),
        value,
    })
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawKey, D::Error> {
        d.deserialize_struct(spanned::NAME, &SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = RawKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKey, E> {
        Ok(RawKey {
            name: v.to_owned(),
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKey, A::Error> {
        let (mut start, mut end, mut name) = (0, 0, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                spanned::START_FIELD => start = map.next_value()?,
                spanned::END_FIELD => end = map.next_value()?,
                spanned::VALUE_FIELD => name = Some(map.next_value::<String>()?),
                _ => return Err(de::Error::custom("unexpected field in a spanned key")),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(spanned::VALUE_FIELD))?;
        Ok(RawKey {
            name,
            span: Some(start..end.max(start)),
        })
    }
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
