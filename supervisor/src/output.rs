//! Reading the services' log pipes in the loop and handing lines to their
//! `UnitLog` and to `keel logs -f` followers.

use crate::runtime::Supervisor;
use keel_kernel::clock::boottime;
use std::io::Read;
use std::os::fd::AsRawFd;

impl Supervisor {
    fn log_files(&self) -> crate::logs::LogFiles {
        crate::logs::LogFiles {
            dir: self.config.log_dir.clone(),
        }
    }

    /// A log pipe is readable (or hung up).
    pub(crate) fn on_log(&mut self, id: u64, hangup: bool) {
        let files = self.log_files();
        let mut buf = [0u8; 16 * 1024];
        let mut closed = false;
        let mut lines = Vec::new();
        let Some((unit, file)) = self.log_pipes.get_mut(&id) else {
            return;
        };
        let unit = unit.clone();
        // Bounded per wake-up, so one chatty service cannot starve the rest.
        for _ in 0..16 {
            match file.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    if let Some(log) = self.logs.get_mut(&unit) {
                        lines.extend(log.feed(&buf[..n], boottime(), &files));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed || (hangup && lines.is_empty()) {
            if let Some((_, f)) = self.log_pipes.remove(&id) {
                let _ = self.epoll.delete(f.as_raw_fd());
            }
            if let Some(last) = self
                .logs
                .get_mut(&unit)
                .and_then(|l| l.flush(boottime(), &files))
            {
                lines.push(last);
            }
        }
        if !lines.is_empty() {
            self.send_to_followers(&unit, &lines);
        }
    }

    /// Reads whatever is left in every pipe (before shutting down).
    pub(crate) fn drain_logs(&mut self) {
        let ids: Vec<u64> = self.log_pipes.keys().copied().collect();
        for id in ids {
            self.on_log(id, false);
        }
    }
}
