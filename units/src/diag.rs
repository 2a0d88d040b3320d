//! Diagnostics in the shape compilers use: `FILE:LINE:COL: error: MESSAGE`,
//! plus the small helpers that produce them (positions, "did you mean").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How bad a diagnostic is. Only errors exclude a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The unit (and the units that require it) will not be started.
    Error,
    /// Worth fixing, but nothing is excluded because of it.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position in a unit file: 1-based line and column (columns count
/// characters, not bytes). Line 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// The file the position is in.
    pub file: Arc<Path>,
    /// 1-based line, or 0 when the diagnostic is about the whole file.
    pub line: usize,
    /// 1-based column in characters, or 0 with line 0.
    pub col: usize,
}

impl Loc {
    /// The whole of `file` (line 0, column 0).
    pub fn file(file: Arc<Path>) -> Loc {
        Loc {
            file,
            line: 0,
            col: 0,
        }
    }
}

/// One problem found in a unit file or between units.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column (characters); 0 with line 0.
    pub col: usize,
    /// The unit concerned, when there is one.
    pub unit: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, in one line.
    pub hint: Option<String>,
    /// Error or warning.
    pub severity: Severity,
}

impl Diagnostic {
    /// An error at `loc`.
    pub fn error(loc: &Loc, unit: Option<&str>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, loc, unit, message.into())
    }

    /// A warning at `loc`.
    pub fn warning(loc: &Loc, unit: Option<&str>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, loc, unit, message.into())
    }

    fn new(severity: Severity, loc: &Loc, unit: Option<&str>, message: String) -> Diagnostic {
        Diagnostic {
            file: loc.file.to_path_buf(),
            line: loc.line,
            col: loc.col,
            unit: unit.map(str::to_owned),
            message,
            hint: None,
            severity,
        }
    }

    /// The same diagnostic with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// The same diagnostic with an optional hint.
    pub fn with_opt_hint(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error: MESSAGE` (just `FILE: error: MESSAGE` for line 0),
    /// then `  = hint: HINT` on a second line when there is a hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        write!(f, "{}: {}", self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of one text into [`Loc`]s.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    file: Arc<Path>,
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(file: Arc<Path>, text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { file, text, starts }
    }

    /// The position of byte `offset` (clamped to the text).
    pub(crate) fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Loc {
            file: self.file.clone(),
            line,
            col,
        }
    }
}

/// Edit distance (insertions, deletions, substitutions and swaps of two
/// neighbours) after folding case and `_` to `-`, so that `Restart_Delay`
/// is no step from `restart-delay` and `TREM` one step from `TERM`.
fn distance(a: &str, b: &str) -> usize {
    let fold = |c: char| {
        if c == '_' {
            '-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    let a: Vec<char> = a.chars().map(fold).collect();
    let b: Vec<char> = b.chars().map(fold).collect();
    let width = b.len() + 1;
    let mut d: Vec<usize> = (0..(a.len() + 1) * width)
        .map(|k| if k < width { k } else { 0 })
        .collect();
    for i in 1..=a.len() {
        d[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Long words tolerate more typos; a 3-letter word only one.
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|&(d, c)| d <= limit && c != word)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let index = LineIndex::new(Path::new("f").into(), "a = 1\nné = \"x\"\n");
        let loc = index.loc(0);
        assert_eq!((loc.line, loc.col), (1, 1));
        let loc = index.loc(6);
        assert_eq!((loc.line, loc.col), (2, 1));
        // "né = " is 6 bytes but 5 characters.
        let loc = index.loc(12);
        assert_eq!((loc.line, loc.col), (2, 6));
        let loc = index.loc(999);
        assert_eq!((loc.line, loc.col), (3, 1));
    }

    #[test]
    fn suggestions_fold_case_and_underscores() {
        let keys = ["restart", "restart-delay", "exec"];
        assert_eq!(did_you_mean("restart_delay", keys), Some("restart-delay"));
        assert_eq!(did_you_mean("exex", keys), Some("exec"));
        assert_eq!(did_you_mean("zzzz", keys), None);
        assert_eq!(did_you_mean("TREM", ["TERM", "TRAP"]), Some("TERM"));
    }

    #[test]
    fn display_is_compiler_shaped() {
        let loc = Loc {
            file: Path::new("/u/a.toml").into(),
            line: 3,
            col: 7,
        };
        let d = Diagnostic::error(&loc, Some("a"), "bad").with_hint("fix it");
        assert_eq!(d.to_string(), "/u/a.toml:3:7: error: bad\n  = hint: fix it");
        let d = Diagnostic::warning(&Loc::file(loc.file), None, "unreadable");
        assert_eq!(d.to_string(), "/u/a.toml: warning: unreadable");
    }
}
