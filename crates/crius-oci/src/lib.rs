//! crius-oci: everything crius does through an OCI runtime binary (runc, crun) and through the
//! per-container `crius-monitor`: probing handlers, create (via the monitor), start, kill,
//! delete, state, update, exec, attach, log reopen, and reading exit records.

mod attach;
mod error;
mod exec;
mod handler;
mod monitor;
mod probe;
mod tree;

pub use attach::{
    attach, encode_frame, resize_payload, AttachReader, AttachStream, AttachWriter, Frame,
    FrameKind,
};
pub use error::OciError;
pub use exec::{ExecOutput, ExecProcess, Pty};
pub use handler::{
    is_transient, ContainerState, Handler, HandlerKind, HandlerStatus, KillOutcome, RuntimeFeatures,
};
pub use monitor::{
    abandon, cgroup_procs_files, join_cgroups_in_child, monitor_alive, pid_alive, read_exit,
    reopen_log, spawn_monitor, start as start_via_monitor, wait_pid_exit, ExitInfo, MonitorConfig,
    MonitorHandle,
};
pub use probe::{
    run_trial_bundle, sweep_dead_trials, trial_id, trial_seccomp, trial_seccomp_full, SeccompTrial,
};
pub use tree::{descendants, kill_tree};

/// Test-only crash points: the daemon installs a hook (`crius::crash`) that kills it with SIGKILL at
/// the one point armed when it started; without a hook (every other use) a point does nothing.
static CRASH_HOOK: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Installs the crash-point hook (once; later calls are ignored).
pub fn set_crash_hook(hook: fn(&'static str)) {
    let _ = CRASH_HOOK.set(hook);
}

pub(crate) fn crash_point(name: &'static str) {
    if let Some(hook) = CRASH_HOOK.get() {
        hook(name);
    }
}

/// Spawns `cmd` on a blocking thread: fork/exec of a large multi-threaded daemon takes milliseconds
/// (page tables, `pre_exec` hooks) that must not stall an async worker.
pub async fn spawn_off_worker(
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    tokio::task::spawn_blocking(move || cmd.spawn())
        .await
        .map_err(std::io::Error::other)?
}
