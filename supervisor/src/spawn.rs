//! Starting a unit's main process: everything the child needs is decided
//! here, before fork (environment, credentials, cgroup and limits, the log
//! pipe, stored fds, capabilities), and `keel_kernel::process::Command`
//! does the fork and exec.

use crate::creds;
use crate::runtime::{Supervisor, TOKEN_LOG};
use keel_kernel::process::{self, Command, Stdio};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn ident_str(i: &keel_units::Ident) -> String {
    match i {
        keel_units::Ident::Name(n) => n.clone(),
        keel_units::Ident::Id(id) => id.to_string(),
    }
}

impl Supervisor {
    /// Forks and execs `name`'s main process; returns its pid, or the
    /// reason it could not start (naming the step and the program).
    pub(crate) fn spawn(&mut self, name: &str) -> Result<i32, String> {
        let unit = self
            .units
            .get(name)
            .ok_or_else(|| "unknown unit".to_string())?
            .clone();
        let e = |e: process::SpawnError| e.to_string();
        let mut cmd = self.unit_command(&unit, &unit.exec)?;
        if unit.kind == keel_units::ServiceType::Notify {
            if let Some(path) = &self.config.notify_socket {
                cmd.env("NOTIFY_SOCKET", &path.to_string_lossy())
                    .map_err(e)?;
            }
            if let Some(w) = unit.watchdog {
                cmd.env("WATCHDOG_USEC", &w.as_micros().to_string())
                    .map_err(e)?;
            }
        }
        if let Some(v) = unit.oom_score_adj {
            cmd.oom_score_adj(v);
        }
        if let Some(cgs) = &self.config.cgroups {
            // A cgroup that cgroup.kill was used on is replaced by a fresh
            // one once it is empty, or else joined by migration (see
            // `Command::cgroup_by_migration`); any other is reused.
            let mut killed = false;
            if let Some(old) = self.cgroups.remove(name) {
                if old.was_killed() && (old.populated() || old.remove().is_err()) {
                    killed = true;
                }
            }
            match cgs.unit(name) {
                Ok(cg) => {
                    if killed {
                        cg.set_killed();
                        cmd.cgroup_by_migration(true);
                    }
                    self.apply_limits(name, &unit, &cg);
                    cmd.cgroup_procs(&cg.procs_file().to_string_lossy())
                        .map_err(e)?;
                    self.cgroups.insert(name.to_string(), cg);
                }
                Err(err) => log::warn!("{name}: {err}; running without a cgroup"),
            }
        }
        // Stored fds come back as LISTEN_FDS.
        let (fds, names): (Vec<_>, Vec<_>) = self
            .fdstore
            .get(name)
            .map(|v| v.iter().map(|(n, fd)| (fd.as_raw_fd(), n.clone())).unzip())
            .unwrap_or_default();
        cmd.listen_fds(fds, &names).map_err(e)?;
        self.spawn_logged(name, &mut cmd, &unit.exec)
    }

    /// A command running `argv` in `unit`'s execution environment: PATH and
    /// its environment, working directory, umask, open-file limit,
    /// no_new_privs, capability bounding set, user, group and supplementary
    /// groups. The main process and exec probes both run so.
    pub(crate) fn unit_command(
        &self,
        unit: &keel_units::Unit,
        argv: &[String],
    ) -> Result<Command, String> {
        let e = |e: process::SpawnError| e.to_string();
        let mut cmd = Command::new(argv).map_err(e)?;
        if !unit.environment.contains_key("PATH") {
            cmd.env("PATH", PATH).map_err(e)?;
        }
        for (k, v) in &unit.environment {
            cmd.env(k, v).map_err(e)?;
        }
        if let Some(dir) = &unit.working_directory {
            cmd.cwd(&dir.to_string_lossy()).map_err(e)?;
        }
        if let Some(mask) = unit.umask {
            cmd.umask(mask);
        }
        if let Some(n) = unit.limits.nofile {
            cmd.rlimit(process::Resource::NoFile, n);
        }
        cmd.no_new_privs(unit.no_new_privileges);
        if let Some(caps) = &unit.capabilities {
            let keep: Vec<u8> = caps.iter().map(|c| c.0).collect();
            let last = std::fs::read_to_string(self.config.proc.join("sys/kernel/cap_last_cap"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40);
            cmd.cap_bounding(&keep, last);
        }
        if let Some(user) = &unit.user {
            let user = ident_str(user);
            let (uid, mut gid) =
                creds::lookup_user(&self.config.passwd, &user).map_err(|e| e.to_string())?;
            if let Some(g) = &unit.group {
                gid = creds::lookup_group(&self.config.group, &ident_str(g))
                    .map_err(|e| e.to_string())?;
            }
            let mut groups = creds::member_groups(&self.config.group, &user);
            for g in &unit.supplementary_groups {
                groups.push(
                    creds::lookup_group(&self.config.group, &ident_str(g))
                        .map_err(|e| e.to_string())?,
                );
            }
            cmd.user(uid, gid, groups);
        }
        Ok(cmd)
    }

    /// Spawns `cmd` (running `argv`) with stdout and stderr in one pipe
    /// into `name`'s log; the error names the failing step and the program.
    pub(crate) fn spawn_logged(
        &mut self,
        name: &str,
        cmd: &mut Command,
        argv: &[String],
    ) -> Result<i32, String> {
        let pipe = keel_kernel::fs::pipe(true).ok();
        if let Some((_, w)) = &pipe {
            cmd.stdout(Stdio::Fd(w.as_raw_fd()));
            cmd.stderr(Stdio::Fd(w.as_raw_fd()));
        }
        let exe = argv.first().map(String::as_str).unwrap_or("");
        let pid = cmd.spawn().map_err(|e| match e {
            process::SpawnError::Child { stage, source } => {
                format!("{stage} failed for {exe}: {source}")
            }
            other => format!("{other} (starting {exe})"),
        })?;
        if let Some((r, w)) = pipe {
            drop(w);
            self.add_log_pipe(name, r);
        }
        Ok(pid)
    }

    fn add_log_pipe(&mut self, name: &str, r: OwnedFd) {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(err) = self.epoll.add(r.as_raw_fd(), TOKEN_LOG | id) {
            log::warn!("{name}: cannot watch its output: {err}");
            return;
        }
        self.log_pipes.insert(id, (name.to_string(), File::from(r)));
    }

    fn apply_limits(
        &self,
        name: &str,
        unit: &keel_units::Unit,
        cg: &keel_kernel::cgroup::UnitCgroup,
    ) {
        let Some(cgs) = &self.config.cgroups else {
            return;
        };
        let l = &unit.limits;
        let wanted = [
            ("memory.max", l.memory_max.map(|v| v.to_string())),
            ("cpu.weight", l.cpu_weight.map(|v| v.to_string())),
            ("pids.max", l.pids_max.map(|v| v.to_string())),
        ];
        for (file, value) in wanted {
            let Some(value) = value else { continue };
            match cgs.limit(cg, file, &value) {
                Ok(true) => {}
                Ok(false) => log::warn!(
                    "{name}: {file}={value} skipped: this cgroup has no {} controller",
                    file.split('.').next().unwrap_or(file)
                ),
                Err(err) => log::warn!("{name}: {err}"),
            }
        }
    }
}
