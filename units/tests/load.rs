//! Loading many units: the checks between units (missing dependencies,
//! cycles, exclusion of what requires a broken unit), drop-ins and the
//! override directories, with their exact diagnostics.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::fs;
use std::path::{Path, PathBuf};

use keel_units::{load, resolve, Excluded, Loaded, UnitSource};

/// Units from (name, text) pairs, each as `/u/NAME.toml`.
fn from_texts(units: &[(&str, &str)]) -> Loaded {
    resolve(
        units
            .iter()
            .map(|(name, text)| UnitSource {
                name: (*name).to_owned(),
                file: PathBuf::from(format!("/u/{name}.toml")),
                text: (*text).to_owned(),
                ..UnitSource::default()
            })
            .collect(),
    )
}

fn shown(loaded: &Loaded) -> Vec<String> {
    loaded.diagnostics.iter().map(ToString::to_string).collect()
}

fn excluded(loaded: &Loaded) -> Vec<(String, String)> {
    loaded
        .excluded
        .iter()
        .map(|Excluded { unit, reason }| (unit.clone(), reason.clone()))
        .collect()
}

fn names(loaded: &Loaded) -> Vec<&str> {
    loaded.units.keys().map(String::as_str).collect()
}

const OK: &str = "exec = [\"/bin/true\"]\n";

#[test]
fn broken_units_are_excluded_with_what_requires_them() {
    let l = from_texts(&[
        ("web", "exec = [\"/bin/true\"]\nrequires = [\"dbb\", \"cache\"]\n"),
        ("db", OK),
        ("cache", "exec = [\"/bin/true\"]\nrequires = [\"broken\"]\n"),
        ("broken", "exec = [\"bin/true\"]\nbogus = 1\n"),
        ("front", "exec = [\"/bin/true\"]\nrequires = [\"web\"]\n"),
        ("edge", "exec = [\"/bin/true\"]\nrequires = [\"front\"]\n"),
        ("d", "exec = [\"/bin/true\"]\nrequires = [\"off\"]\n"),
        ("off", "exec = [\"/bin/true\"]\nenabled = false\nbogus = 2\n"),
        ("z", "exec = [\"/bin/true\"]\nwants = [\"off\", \"cache\", \"metrcs\", \"db\"]\nafter = [\"nothing\"]\n"),
        ("metrics", "exec = [\"/bin/true\"]\nrequires = [\"db\"]\n"),
    ]);
    assert_eq!(
        shown(&l),
        [
            "/u/broken.toml:1:9: error: `exec` must start with an absolute path, not \"bin/true\"\n  = hint: keel does not search PATH: write the full path, e.g. \"/usr/bin/true\"",
            "/u/broken.toml:2:1: error: unknown key `bogus`",
            "/u/d.toml:2:13: error: `requires` names `off`, which is disabled\n  = hint: enable `off`, or use `wants` for a dependency that may be off",
            // A disabled unit's problems do not count against the boot.
            "/u/off.toml:3:1: warning: unknown key `bogus`",
            "/u/web.toml:2:13: error: `requires` names `dbb`, which does not exist\n  = hint: did you mean `db`?",
            "/u/z.toml:2:17: warning: `wants` names `cache`, which is excluded",
            "/u/z.toml:2:26: warning: `wants` names `metrcs`, which does not exist\n  = hint: did you mean `metrics`?",
        ]
    );
    assert_eq!(
        excluded(&l),
        [
            ("broken".into(), "invalid: `exec` must start with an absolute path, not \"bin/true\" (and 1 more error)".into()),
            ("cache".into(), "requires `broken`, which is invalid".into()),
            ("d".into(), "requires `off`, which is disabled".into()),
            ("edge".into(), "requires `front`, which is excluded because `web` requires `dbb`, which does not exist".into()),
            ("front".into(), "requires `web`, which requires `dbb`, which does not exist".into()),
            ("web".into(), "requires `dbb`, which does not exist".into()),
        ]
    );
    assert_eq!(names(&l), ["db", "metrics", "z"]);
    assert_eq!(l.disabled, ["off"]);
    assert!(l.has_errors());
}

#[test]
fn cycles_are_reported_where_their_first_edge_is_written() {
    let l = from_texts(&[
        ("a", "exec = [\"/bin/true\"]\nrequires = [\"b\"]\n"),
        ("b", "exec = [\"/bin/true\"]\nwants = [\"c\"]\n"),
        ("c", "exec = [\"/bin/true\"]\nafter = [\"a\"]\n"),
        ("needs-a", "exec = [\"/bin/true\"]\nrequires = [\"a\"]\n"),
        ("x", "exec = [\"/bin/true\"]\nbefore = [\"y\"]\n"),
        ("y", "exec = [\"/bin/true\"]\nbefore = [\"x\"]\n"),
        ("free", "exec = [\"/bin/true\"]\nafter = [\"a\", \"x\"]\n"),
    ]);
    assert_eq!(
        shown(&l),
        [
            "/u/a.toml:2:13: error: dependency cycle: a -> b -> c -> a\n  = hint: remove one of: `a` requires `b`, `b` wants `c`, `c` is after `a`",
            "/u/y.toml:2:11: error: dependency cycle: x -> y -> x\n  = hint: remove one of: `y` is before `x`, `x` is before `y`",
        ]
    );
    assert_eq!(
        excluded(&l),
        [
            ("a".into(), "in a dependency cycle: a -> b -> c -> a".into()),
            ("b".into(), "in a dependency cycle: a -> b -> c -> a".into()),
            ("c".into(), "in a dependency cycle: a -> b -> c -> a".into()),
            (
                "needs-a".into(),
                "requires `a`, which is in a dependency cycle: a -> b -> c -> a".into()
            ),
            ("x".into(), "in a dependency cycle: x -> y -> x".into()),
            ("y".into(), "in a dependency cycle: x -> y -> x".into()),
        ]
    );
    // Ordering on an excluded unit does not hold `free` back.
    assert_eq!(names(&l), ["free"]);
}

#[test]
fn a_clean_set_has_no_diagnostics_and_keeps_every_unit() {
    let l = from_texts(&[
        ("net", "exec = [\"/bin/net\"]\ntype = \"oneshot\"\n"),
        (
            "etcd",
            "exec = [\"/bin/etcd\"]\ntype = \"notify\"\nrequires = [\"net\"]\n",
        ),
        (
            "containerd",
            "exec = [\"/bin/containerd\"]\nwants = [\"etcd\"]\nkill-mode = \"process\"\n",
        ),
    ]);
    assert!(l.diagnostics.is_empty(), "{:?}", shown(&l));
    assert!(l.excluded.is_empty() && !l.has_errors());
    let graph = keel_units::Graph::new(&l.units).unwrap();
    assert_eq!(
        graph.start_levels(),
        [vec!["net"], vec!["etcd"], vec!["containerd"]]
    );
}

fn write(path: &Path, text: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn directories_override_and_drop_ins_merge_key_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, etc, run) = (
        tmp.path().join("lib"),
        tmp.path().join("etc"),
        tmp.path().join("run"),
    );
    write(
        &lib.join("etcd.toml"),
        b"exec = [\"/usr/bin/etcd\"]\nenvironment = { A = \"1\", B = \"2\" }\nlimits = { memory-max = \"1G\", nofile = 1024 }\n",
    );
    // /etc tunes the image's unit without copying it.
    write(
        &etc.join("etcd.d/10-mem.toml"),
        b"limits = { memory-max = \"2G\" }\nenvironment.B = \"3\"\n",
    );
    write(
        &run.join("etcd.d/20-args.toml"),
        b"exec = [\"/usr/bin/etcd\", \"--debug\"]\n",
    );
    // A later drop-in of the same file name replaces an earlier one.
    write(&lib.join("etcd.d/20-args.toml"), b"exec = [\"/nope\"]\n");
    // A later unit file replaces an earlier one whole.
    write(&lib.join("web.toml"), b"exec = [\"/old\"]\nbogus = 1\n");
    write(&etc.join("web.toml"), b"exec = [\"/usr/bin/web\"]\n");
    // enabled = false in a drop-in disables an image unit.
    write(&lib.join("debug.toml"), b"exec = [\"/usr/bin/debug\"]\n");
    write(&etc.join("debug.d/off.toml"), b"enabled = false\n");
    // Not units: other extensions, hidden files, directories named *.toml.
    write(&etc.join("README"), b"hello");
    write(&etc.join(".hidden.toml"), b"garbage = ");
    fs::create_dir_all(etc.join("dir.toml")).unwrap();
    let l = load(&[
        lib.clone(),
        etc.clone(),
        tmp.path().join("missing"),
        run.clone(),
    ]);
    assert!(l.diagnostics.is_empty(), "{:?}", shown(&l));
    assert_eq!(names(&l), ["etcd", "web"]);
    assert_eq!(l.disabled, ["debug"]);
    let etcd = &l.units["etcd"];
    assert_eq!(etcd.exec, ["/usr/bin/etcd", "--debug"]);
    assert_eq!(etcd.limits.memory_max, Some(2 << 30));
    assert_eq!(etcd.limits.nofile, Some(1024));
    assert_eq!(etcd.environment.get("A").map(String::as_str), Some("1"));
    assert_eq!(etcd.environment.get("B").map(String::as_str), Some("3"));
    assert_eq!(etcd.source, lib.join("etcd.toml"));
    assert_eq!(
        etcd.dropins,
        [
            etc.join("etcd.d/10-mem.toml"),
            run.join("etcd.d/20-args.toml")
        ]
    );
    assert_eq!(l.units["web"].source, etc.join("web.toml"));
}

#[test]
fn a_drop_in_error_points_into_the_drop_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write(&dir.join("a.toml"), b"exec = [\"/bin/a\"]\n");
    write(&dir.join("a.d/x.toml"), b"\nstop-timeout = 5\n");
    let l = load(std::slice::from_ref(&dir));
    let file = dir.join("a.d/x.toml");
    assert_eq!(
        shown(&l),
        [format!(
            "{}:2:16: error: `stop-timeout` must be a duration string, not an integer\n  = hint: a number alone has no unit: write \"5s\" or \"5ms\"",
            file.display()
        )]
    );
    assert_eq!(
        excluded(&l),
        [(
            "a".into(),
            "invalid: `stop-timeout` must be a duration string, not an integer".into()
        )]
    );
}

#[test]
fn unreadable_files_bad_names_and_orphans_do_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write(&dir.join("good.toml"), OK.as_bytes());
    write(&dir.join("latin1.toml"), b"description = \"caf\xe9\"\n");
    write(&dir.join("bad name.toml"), OK.as_bytes());
    write(&dir.join("ghost.d/x.toml"), OK.as_bytes());
    let l = load(std::slice::from_ref(&dir));
    assert_eq!(
        shown(&l),
        [
            format!(
                "{}: error: invalid unit name `bad name`\n  = hint: unit names use letters, digits and - _ . @",
                dir.join("bad name.toml").display()
            ),
            format!("{}: warning: drop-in for `ghost`, which has no unit file", dir.join("ghost.d/x.toml").display()),
            format!("{}: error: cannot read unit file: stream did not contain valid UTF-8", dir.join("latin1.toml").display()),
        ]
    );
    assert_eq!(l.diagnostics[2].line, 0);
    assert_eq!(names(&l), ["good"]);
    assert_eq!(
        excluded(&l),
        [(
            "latin1".into(),
            "invalid: cannot read unit file: stream did not contain valid UTF-8".into()
        )]
    );
}

/// Masking as systemd does it: `NAME.toml` linked to /dev/null in a later
/// directory drops the unit (its drop-ins too, without an orphan warning);
/// a unit that requires it is excluded, naming it; a real file in a still
/// later directory unmasks it.
#[test]
fn a_link_to_dev_null_masks_a_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, etc, run) = (
        tmp.path().join("lib"),
        tmp.path().join("etc"),
        tmp.path().join("run"),
    );
    write(&lib.join("debug.toml"), OK.as_bytes());
    write(
        &lib.join("debug.d/x.toml"),
        b"environment = { A = \"1\" }\n",
    );
    write(
        &lib.join("web.toml"),
        b"exec = [\"/bin/true\"]\nrequires = [\"debug\"]\n",
    );
    write(&lib.join("extra.toml"), OK.as_bytes());
    write(
        &lib.join("side.toml"),
        b"exec = [\"/bin/true\"]\nwants = [\"extra\"]\n",
    );
    fs::create_dir_all(&etc).unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("debug.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("extra.toml")).unwrap();
    // Unmasked again by the runtime directory.
    std::os::unix::fs::symlink("/dev/null", etc.join("back.toml")).unwrap();
    write(&lib.join("back.toml"), OK.as_bytes());
    write(&run.join("back.toml"), OK.as_bytes());
    let l = load(&[lib.clone(), etc.clone(), run.clone()]);
    assert_eq!(l.masked, ["debug", "extra"]);
    assert_eq!(names(&l), ["back", "side"]);
    assert_eq!(
        excluded(&l),
        [(
            "web".to_owned(),
            "requires `debug`, which is masked".to_owned()
        )]
    );
    let shown = shown(&l);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].contains("`requires` names `debug`, which is masked")
            && shown[0].contains("remove the link debug.toml -> /dev/null"),
        "{shown:?}"
    );
}
