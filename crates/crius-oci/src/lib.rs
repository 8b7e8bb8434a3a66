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
pub use probe::{run_trial_bundle, trial_id, trial_seccomp};
pub use tree::{descendants, kill_tree};
