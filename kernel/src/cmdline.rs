//! The kernel command line, parsed the way the kernel itself splits it
//! (lib/cmdline.c): words separated by white space, double quotes grouping
//! white space into one word (`keel.x="a b"`), `key=value` or a bare `key`,
//! and everything after a lone `--` handed to init as its arguments.
//!
//! Parsing is pure; [`Cmdline::read`] takes the path (`/proc/cmdline`) so a
//! test can point it elsewhere.

use std::path::Path;

/// A parsed command line: parameters in order (repeats kept) and init args.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
    init_args: Vec<String>,
}

impl Cmdline {
    /// Parses a command line. Never fails: odd input yields odd words, as in
    /// the kernel.
    pub fn parse(text: &str) -> Cmdline {
        let mut out = Cmdline::default();
        let mut after_dashes = false;
        for (word, quoted) in split_words(text) {
            if after_dashes {
                out.init_args.push(word);
                continue;
            }
            if word == "--" && !quoted {
                after_dashes = true;
                continue;
            }
            match word.split_once('=') {
                Some((k, v)) => out.params.push((k.to_string(), Some(v.to_string()))),
                None => out.params.push((word, None)),
            }
        }
        out
    }

    /// Reads and parses a command-line file such as `/proc/cmdline`.
    pub fn read(path: &Path) -> std::io::Result<Cmdline> {
        Ok(Cmdline::parse(&std::fs::read_to_string(path)?))
    }

    /// Adds parameters from another line; they win over earlier ones.
    pub fn extend(&mut self, other: Cmdline) {
        self.params.extend(other.params);
        self.init_args.extend(other.init_args);
    }

    /// The value of the last `key=value`; `None` when absent or bare.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `key` appears at all, bare or with a value.
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    /// Every value given to `key`, in order (for keys that accumulate, such
    /// as `keel.modules=`).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == key)
            .filter_map(|(_, v)| v.as_deref())
    }

    /// A boolean flag: bare `key`, or `key=1|yes|true|on`.
    pub fn flag(&self, key: &str) -> bool {
        match self.params.iter().rev().find(|(k, _)| k == key) {
            Some((_, None)) => true,
            Some((_, Some(v))) => matches!(v.as_str(), "1" | "yes" | "true" | "on" | "y"),
            None => false,
        }
    }

    /// Parameters in order.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The words after `--`, which the kernel hands to init.
    pub fn init_args(&self) -> &[String] {
        &self.init_args
    }
}

/// Splits on white space outside double quotes, dropping the quotes. The
/// flag says whether the word contained a quote (a quoted `"--"` is a word,
/// not the separator).
fn split_words(text: &str) -> Vec<(String, bool)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                in_word = true;
                quoted = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if in_word {
                    words.push((std::mem::take(&mut cur), quoted));
                    in_word = false;
                    quoted = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push((cur, quoted));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn table() {
        type Row = (
            &'static str,
            Vec<(String, Option<String>)>,
            Vec<&'static str>,
        );
        let rows: Vec<Row> = vec![
            ("", vec![], vec![]),
            ("   \n", vec![], vec![]),
            ("quiet", vec![p("quiet", None)], vec![]),
            (
                "console=ttyS0 quiet",
                vec![p("console", Some("ttyS0")), p("quiet", None)],
                vec![],
            ),
            (
                "keel.root=PARTLABEL=KEEL-A",
                vec![p("keel.root", Some("PARTLABEL=KEEL-A"))],
                vec![],
            ),
            (
                r#"keel.x="a b  c" y"#,
                vec![p("keel.x", Some("a b  c")), p("y", None)],
                vec![],
            ),
            (r#""a b"=c"#, vec![p("a b", Some("c"))], vec![]),
            ("k=", vec![p("k", Some(""))], vec![]),
            (
                "a=1 a=2",
                vec![p("a", Some("1")), p("a", Some("2"))],
                vec![],
            ),
            (
                "ro -- single --x y",
                vec![p("ro", None)],
                vec!["single", "--x", "y"],
            ),
            (
                r#"ro "--" z"#,
                vec![p("ro", None), p("--", None), p("z", None)],
                vec![],
            ),
            ("a -- -- b", vec![p("a", None)], vec!["--", "b"]),
            ("\tx=1\n", vec![p("x", Some("1"))], vec![]),
            (
                r#"x="unterminated y"#,
                vec![p("x", Some("unterminated y"))],
                vec![],
            ),
        ];
        for (line, params, init) in rows {
            let c = Cmdline::parse(line);
            assert_eq!(c.params(), params.as_slice(), "params of {line:?}");
            let init: Vec<String> = init.into_iter().map(String::from).collect();
            assert_eq!(c.init_args(), init.as_slice(), "init args of {line:?}");
        }
    }

    #[test]
    fn lookups() {
        let c = Cmdline::parse("a=1 a=2 b c=0 d=yes keel.modules=x,y keel.modules=z");
        assert_eq!(c.get("a"), Some("2"), "the last value wins");
        assert_eq!(c.get("b"), None, "a bare key has no value");
        assert!(c.has("b"));
        assert!(!c.has("e"));
        assert!(c.flag("b"));
        assert!(!c.flag("c"));
        assert!(c.flag("d"));
        assert!(!c.flag("e"));
        assert_eq!(c.all("keel.modules").collect::<Vec<_>>(), vec!["x,y", "z"]);
    }

    #[test]
    fn extend_lets_later_win() {
        let mut c = Cmdline::parse("keel.after-boot=reboot");
        c.extend(Cmdline::parse("keel.after-boot=poweroff"));
        assert_eq!(c.get("keel.after-boot"), Some("poweroff"));
    }
}
