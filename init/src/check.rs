//! `keel check [--json] [DIR...]`: loads the units of DIR... (by default
//! the three unit directories, later winning), prints every diagnostic the
//! way a compiler does, then the start order as levels and the excluded
//! units with their reasons. Exit status: 0 when there is no error
//! (warnings allowed), 1 otherwise, 2 on a usage error. `--json` prints one
//! JSON object instead, for tools.

use std::fmt::Write as _;
use std::path::PathBuf;

use keel_units::{Diagnostic, Graph, Loaded, Severity, DEFAULT_DIRS};
use serde_json::{json, Value};

const USAGE: &str = "usage: keel check [--json] [DIR...]";

/// Runs `keel check`; `args` are the words after `check`. Returns the
/// exit status.
pub fn run(args: &[String]) -> i32 {
    let mut json = false;
    let mut dirs = Vec::new();
    let mut options_done = false;
    for arg in args {
        match arg.as_str() {
            "--" if !options_done => options_done = true,
            "--json" if !options_done => json = true,
            "-h" | "--help" if !options_done => {
                println!("{USAGE}");
                return 0;
            }
            opt if opt.starts_with('-') && !options_done => {
                eprintln!("keel check: unknown option `{opt}`\n{USAGE}");
                return 2;
            }
            dir => dirs.push(PathBuf::from(dir)),
        }
    }
    if dirs.is_empty() {
        dirs = DEFAULT_DIRS.iter().map(PathBuf::from).collect();
    }
    let (out, status) = report(&dirs, json);
    print!("{out}");
    status
}

/// The whole output and the exit status, for `dirs`.
fn report(dirs: &[PathBuf], json: bool) -> (String, i32) {
    let loaded = keel_units::load(dirs);
    // `load` leaves no cycle; should it ever, say so rather than hide it.
    let (levels, stop_levels, cycles) = match Graph::new(&loaded.units) {
        Ok(graph) => (graph.start_levels(), graph.stop_levels(), Vec::new()),
        Err(cycles) => (Vec::new(), Vec::new(), cycles),
    };
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count() + cycles.len();
    let warnings = loaded.diagnostics.len() + cycles.len() - errors;
    let clean = errors == 0 && loaded.excluded.is_empty();
    let status = if clean { 0 } else { 1 };
    if json {
        let value = json!({
            "ok": clean,
            "dirs": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "units": loaded.units.keys().collect::<Vec<_>>(),
            "start_levels": levels,
            "stop_levels": stop_levels,
            "excluded": loaded.excluded.iter()
                .map(|e| json!({ "unit": e.unit, "reason": e.reason }))
                .collect::<Vec<_>>(),
            "disabled": loaded.disabled,
            "masked": loaded.masked,
            "diagnostics": loaded.diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
            "cycles": cycles.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "errors": errors,
            "warnings": warnings,
        });
        return (format!("{value}\n"), status);
    }
    (text(&loaded, &levels, &cycles, errors, warnings), status)
}

fn text(
    loaded: &Loaded,
    levels: &[Vec<String>],
    cycles: &[keel_units::Cycle],
    errors: usize,
    warnings: usize,
) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut out = String::new();
    for d in &loaded.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    for cycle in cycles {
        let _ = writeln!(out, "error: dependency cycle: {cycle}");
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "start order ({}):", plural(loaded.units.len(), "unit"));
    for (i, level) in levels.iter().enumerate() {
        let _ = writeln!(out, "level {i}: {}", level.join(" "));
    }
    if !loaded.excluded.is_empty() {
        let _ = writeln!(out, "excluded ({}):", plural(loaded.excluded.len(), "unit"));
        for e in &loaded.excluded {
            let _ = writeln!(out, "{}: {}", e.unit, e.reason);
        }
    }
    if !loaded.disabled.is_empty() {
        let _ = writeln!(out, "disabled: {}", loaded.disabled.join(" "));
    }
    if !loaded.masked.is_empty() {
        let _ = writeln!(out, "masked: {}", loaded.masked.join(" "));
    }
    let _ = writeln!(
        out,
        "{} ok, {} excluded, {} disabled; {}, {}",
        plural(loaded.units.len(), "unit"),
        loaded.excluded.len(),
        loaded.disabled.len(),
        plural(errors, "error"),
        plural(warnings, "warning"),
    );
    out
}

fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "file": d.file.display().to_string(),
        "line": d.line,
        "col": d.col,
        "unit": d.unit,
        "severity": match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        "message": d.message,
        "hint": d.hint,
        "text": d.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("keel-check-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) {
            fs::write(self.0.join(name), text).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn path(dir: &Path, name: &str) -> String {
        dir.join(name).display().to_string()
    }

    #[test]
    fn clean_units_print_levels_and_exit_0() {
        let tmp = TempDir::new("clean");
        tmp.write("net.toml", "exec = [\"/bin/net\"]\ntype = \"oneshot\"\n");
        tmp.write(
            "etcd.toml",
            "exec = [\"/bin/etcd\"]\nrequires = [\"net\"]\n",
        );
        tmp.write(
            "log.toml",
            "exec = [\"/bin/log\"]\nready-timeout = \"5s\"\n",
        );
        let (out, status) = report(std::slice::from_ref(&tmp.0), false);
        let warning = format!(
            "{}:2:17: warning: `ready-timeout` has no effect: a simple unit without a `ready` probe is ready once spawned",
            path(&tmp.0, "log.toml")
        );
        let want = format!(
            "{warning}\n\nstart order (3 units):\nlevel 0: log net\nlevel 1: etcd\n3 units ok, 0 excluded, 0 disabled; 0 errors, 1 warning\n"
        );
        assert_eq!(out, want);
        assert_eq!(status, 0);
    }

    #[test]
    fn errors_exclusions_and_json() {
        let tmp = TempDir::new("errors");
        tmp.write("db.toml", "exec = [\"/bin/db\"]\nrestart = \"alwys\"\n");
        tmp.write("web.toml", "exec = [\"/bin/web\"]\nrequires = [\"db\"]\n");
        tmp.write("ok.toml", "exec = [\"/bin/ok\"]\n");
        let (out, status) = report(std::slice::from_ref(&tmp.0), false);
        let want = format!(
            "{}:2:11: error: invalid value \"alwys\" for `restart`\n  = hint: did you mean \"always\"?\n\n\
             start order (1 unit):\nlevel 0: ok\n\
             excluded (2 units):\ndb: invalid: invalid value \"alwys\" for `restart`\nweb: requires `db`, which is invalid\n\
             1 unit ok, 2 excluded, 0 disabled; 1 error, 0 warnings\n",
            path(&tmp.0, "db.toml")
        );
        assert_eq!(out, want);
        assert_eq!(status, 1);

        let (out, status) = report(std::slice::from_ref(&tmp.0), true);
        assert_eq!(status, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["units"], json!(["ok"]));
        assert_eq!(v["start_levels"], json!([["ok"]]));
        assert_eq!(
            v["excluded"][1],
            json!({"unit": "web", "reason": "requires `db`, which is invalid"})
        );
        let d = &v["diagnostics"][0];
        assert_eq!((d["line"].as_u64(), d["col"].as_u64()), (Some(2), Some(11)));
        assert_eq!(d["severity"], "error");
        assert_eq!(d["hint"], "did you mean \"always\"?");
        assert_eq!(v["errors"], 1);
    }

    #[test]
    fn usage_errors_exit_2_and_missing_dirs_are_fine() {
        assert_eq!(run(&["--bogus".to_owned()]), 2);
        let (out, status) = report(&[PathBuf::from("/nonexistent/keel/units")], false);
        assert_eq!(status, 0);
        assert!(out.starts_with("start order (0 units):\n"), "{out}");
    }
}
