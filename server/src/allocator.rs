//! The allocator's settings: how long freed memory stays with mimalloc.
//!
//! mimalloc returns memory freed for a second (its default purge delay) to
//! the OS, a few pages at a time. Under steady load that splits the 2 MiB
//! huge pages the live flows sit in into 4 KiB ones, and on a virtual
//! machine a 4 KiB page left idle for a second costs 2–5 µs to touch again
//! (against 0.1–0.3 µs per 4 KiB of a huge page: `flowscope-bench
//! idle-memory`); every live flow is touched again when it is judged done
//! and when it is let go. Measured (docs/benchmarks.md, OTLP, sixth
//! sitting): CPU per span −40 to −50 % at 10k spans/s.
//!
//! Ten minutes keeps the live set in huge pages under steady load and still
//! hands memory back after a burst. mimalloc (v3) does not purge memory
//! that has sat free for the delay: once the delay after a free has passed,
//! it purges everything free at that moment, in 64 KiB pieces. Under steady
//! load that is the allocator's slack, taken back and faulted in again
//! every delay, and each purge splits more huge pages. Ten seconds: ~35
//! page faults a second at 10k spans/s of tiny spans (4.54 against 4.09
//! CPU s per million over 100 s with a minute; docs/benchmarks.md, eighth
//! sitting). A minute: a purge every minute, ~1.2 faults a second, huge
//! pages down from 116–118 to 86–88 MiB in under three minutes. Ten
//! minutes: 1–2 faults in those minutes, 118–120 MiB in huge pages
//! throughout; CPU 0.92× and 0.63× of a minute's in two 180 s rounds, one
//! each way round (docs/benchmarks.md, thirteenth sitting).

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;

/// The setting, as mimalloc reads it from the environment.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";
/// Milliseconds from a free until mimalloc hands back to the OS what is free then.
pub const PURGE_DELAY_MS: &str = "600000";

/// Makes sure the process runs with the purge delay set: mimalloc reads it
/// from the environment, and the environment cannot be changed safely once
/// the process runs, so the first start runs itself again with it set (same
/// pid, arguments and environment besides). A value set by the user is kept;
/// when running again fails, this process goes on with mimalloc's default.
///
/// Call first thing in `main`, before any thread starts.
pub fn configure() {
    if std::env::var_os(PURGE_DELAY_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("flowscope"));
    let name = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = std::process::Command::new(exe)
        .arg0(&arg0)
        .args(args)
        .env(PURGE_DELAY_VAR, PURGE_DELAY_MS)
        .exec();
    // Only returns on failure (a binary replaced since it started, say).
    eprintln!(
        "{name}: cannot run again with {PURGE_DELAY_VAR} set ({err}); running with the allocator's default"
    );
}
