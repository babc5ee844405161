//! Records a worker logged (`worker/logs.rs`), handed to this process's logger.
//!
//! Each keeps its level, target, module path, file and line, so the logger's
//! filters (`RUST_LOG=my_crate=debug`) treat it as a record of this process; its
//! message starts with `(worker PID) `, and the record carries the PID as the
//! key-value `worker_pid` for loggers that show those.

use crate::process::ipc::messages::LogRecord;

/// This process's `log::max_level()` as a number (0 off … 5 trace), for `Setup`:
/// workers forward records up to it.
pub(crate) fn max_level() -> u8 {
    log::max_level() as u8
}

/// Hands a record from worker `pid` to this process's logger, as `log!` would.
pub(crate) fn emit(pid: u32, record: &LogRecord) {
    let Some(level) = level(record.level) else {
        return;
    };
    if level > log::max_level() {
        return;
    }
    let key_values = [("worker_pid", pid)];
    log::logger().log(
        &log::Record::builder()
            .level(level)
            .target(&record.target)
            .args(format_args!("(worker {pid}) {}", record.message))
            .module_path(record.module_path.as_deref())
            .file(record.file.as_deref())
            .line(record.line)
            .key_values(&key_values)
            .build(),
    );
}

/// `log::Level` from its number (1 error … 5 trace).
fn level(n: u8) -> Option<log::Level> {
    match n {
        1 => Some(log::Level::Error),
        2 => Some(log::Level::Warn),
        3 => Some(log::Level::Info),
        4 => Some(log::Level::Debug),
        5 => Some(log::Level::Trace),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_number_round_trip() {
        for l in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ] {
            assert_eq!(level(l as u8), Some(l));
        }
        assert_eq!(level(0), None);
        assert_eq!(level(6), None);
    }
}
