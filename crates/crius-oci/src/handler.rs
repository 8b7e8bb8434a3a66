//! A runtime handler: one OCI runtime binary (runc, crun) with its state root, what it can do
//! (`features`), whether it works on this host, and the plain lifecycle commands run through it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::OciError;

/// Upper bound for one short runtime command (start, kill, delete, state, update).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for each step of the trial container run by [`Handler::probe`].
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Handler {
    pub name: String,
    pub binary: PathBuf,
    pub root: PathBuf,
    pub status: HandlerStatus,
    pub features: Option<RuntimeFeatures>,
    /// Pass `--systemd-cgroup` (the systemd cgroup driver: cgroupsPath is `slice:prefix:name`).
    pub systemd_cgroup: bool,
    /// Global flags given before every subcommand (config `runtimes.<name>.args`, e.g. runsc's
    /// `--network=host`).
    pub global_args: Vec<String>,
    pub kind: HandlerKind,
}

/// What sort of back-end a handler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    /// An OCI runtime that runs containers as host processes in host namespaces (runc, crun, youki).
    #[default]
    Oci,
    /// A sandbox runtime: containers run under their own kernel (gVisor's runsc), so host-kernel
    /// features (idmapped mounts, host namespaces, host devices, cgroup updates) are not theirs.
    Sandbox,
}

impl HandlerKind {
    /// The kind a binary implies when the config does not say: `runsc` is gVisor.
    pub fn of_binary(binary: &Path) -> HandlerKind {
        match binary.file_name().and_then(|n| n.to_str()) {
            Some("runsc") => HandlerKind::Sandbox,
            _ => HandlerKind::Oci,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerStatus {
    Available { version: String },
    Unavailable { reason: String },
}

/// What `<runtime> features` reports (OCI runtime-spec "features" document). Fields absent from
/// the document are false/empty; `raw` keeps everything.
#[derive(Debug, Clone, Default)]
pub struct RuntimeFeatures {
    pub raw: serde_json::Value,
    pub oci_version_min: Option<String>,
    pub oci_version_max: Option<String>,
    pub hooks: Vec<String>,
    pub mount_options: Vec<String>,
    /// `rro` mount option: recursive read-only mounts.
    pub recursive_read_only_mounts: bool,
    /// idmapped mounts (`linux.mountExtensions.idmap.enabled`), what pod user namespaces need.
    pub user_namespaces: bool,
    pub namespaces: Vec<String>,
    pub capabilities: Vec<String>,
    pub seccomp: bool,
    pub apparmor: bool,
    pub selinux: bool,
    pub cgroup_v1: bool,
    pub cgroup_v2: bool,
    pub cgroup_systemd: bool,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl RuntimeFeatures {
    pub fn parse(raw: serde_json::Value) -> RuntimeFeatures {
        let strs = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let flag = |ptr: &str| raw.pointer(ptr).and_then(|v| v.as_bool()).unwrap_or(false);
        let mount_options = strs(raw.get("mountOptions"));
        let annotations = raw
            .get("annotations")
            .and_then(|a| a.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        RuntimeFeatures {
            oci_version_min: raw
                .get("ociVersionMin")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            oci_version_max: raw
                .get("ociVersionMax")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            hooks: strs(raw.get("hooks")),
            recursive_read_only_mounts: mount_options.iter().any(|o| o == "rro"),
            mount_options,
            user_namespaces: flag("/linux/mountExtensions/idmap/enabled"),
            namespaces: strs(raw.pointer("/linux/namespaces")),
            capabilities: strs(raw.pointer("/linux/capabilities")),
            seccomp: flag("/linux/seccomp/enabled"),
            apparmor: flag("/linux/apparmor/enabled"),
            selinux: flag("/linux/selinux/enabled"),
            cgroup_v1: flag("/linux/cgroup/v1"),
            cgroup_v2: flag("/linux/cgroup/v2"),
            cgroup_systemd: flag("/linux/cgroup/systemd"),
            annotations,
            raw,
        }
    }
}

/// The runtime's `state` document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    #[serde(default)]
    pub oci_version: String,
    pub id: String,
    /// creating | created | running | stopped (runc also says "paused").
    pub status: String,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The runtime's error message out of its stderr: the `msg="…"` of logrus text lines (runc) or
/// the plain text (crun), trimmed.
pub(crate) fn error_text(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let i = l.find("msg=\"")?;
            let rest = &l[i + 5..];
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(out),
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            }
            Some(out)
        })
        .collect();
    if msgs.is_empty() {
        text.trim().to_string()
    } else {
        msgs.join("; ")
    }
}

/// Error messages of a runtime JSON log (`--log F --log-format json`), level error/fatal.
pub(crate) fn json_log_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            matches!(
                v.get("level").and_then(|l| l.as_str()),
                Some("error" | "fatal")
            )
        })
        .filter_map(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .collect()
}

fn is_gone(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}

/// Failures a runtime reports that are worth one more try: youki 0.7.0 seals a copy of
/// /proc/self/exe first thing in `main` (before it touches any container) and fails with EBUSY when
/// another youki process holds it at that moment, so the command can simply run again.
pub fn is_transient(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("failed to seal /proc/self/exe") || (m.contains("seal") && m.contains("ebusy"))
}

/// How often a transiently failing command is tried in all, and the pause between tries.
pub(crate) const TRANSIENT_TRIES: u32 = 5;
pub(crate) const TRANSIENT_PAUSE: Duration = Duration::from_millis(50);

fn is_not_running(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not running")
        || m.contains("process already finished")
        || m.contains("no such process")
}

pub(crate) struct RunOutput {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Handler {
    /// Ok when the handler can run containers, else the reason as a typed error.
    pub fn ensure_available(&self) -> Result<(), OciError> {
        match &self.status {
            HandlerStatus::Available { .. } => Ok(()),
            HandlerStatus::Unavailable { reason } => Err(OciError::Unavailable {
                handler: self.name.clone(),
                binary: self.binary.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// `<binary> --root <root> <args…>`, killed if it outlives `timeout`.
    pub(crate) async fn run(
        &self,
        op: &'static str,
        id: &str,
        args: &[OsString],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<RunOutput, OciError> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .args(self.systemd_cgroup.then_some("--systemd-cgroup"))
            .args(&self.global_args)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = crate::spawn_off_worker(cmd)
            .await
            .map_err(|e| OciError::io(format!("run {op} {id} with"), &self.binary, e))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(&data).await.map_err(|e| {
                OciError::io(format!("write stdin of {op} {id} to"), &self.binary, e)
            })?;
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(RunOutput {
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Ok(Err(e)) => Err(OciError::io(
                format!("wait for {op} {id} of"),
                &self.binary,
                e,
            )),
            Err(_) => Err(OciError::Timeout {
                op,
                id: id.to_string(),
                binary: self.binary.clone(),
                after: timeout,
            }),
        }
    }

    /// [`Handler::run`], tried again (bounded) while the runtime fails with a transient error
    /// ([`is_transient`]).
    async fn run_retrying(
        &self,
        op: &'static str,
        id: &str,
        args: &[OsString],
    ) -> Result<RunOutput, OciError> {
        let mut tries = 1;
        loop {
            let out = self.run(op, id, args, None, COMMAND_TIMEOUT).await?;
            if out.status.success()
                || tries >= TRANSIENT_TRIES
                || !is_transient(&error_text(&out.stderr))
            {
                return Ok(out);
            }
            tries += 1;
            tokio::time::sleep(TRANSIENT_PAUSE * tries).await;
        }
    }

    fn failure(&self, op: &'static str, id: &str, out: &RunOutput) -> OciError {
        OciError::Runtime {
            op,
            id: id.to_string(),
            binary: self.binary.clone(),
            exit_code: out.status.code(),
            stderr: error_text(&out.stderr),
        }
    }

    /// Releases a created container's process (`runc start`).
    pub async fn start(&self, id: &str) -> Result<(), OciError> {
        let out = self
            .run_retrying("start", id, &["start".into(), id.into()])
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure("start", id, &out))
        }
    }

    /// Signals the container's init (or, with `all`, every process in it). A container that is
    /// not running or does not exist is not an error: the caller wanted it dead. Use
    /// [`Handler::kill_checked`] to tell those cases apart.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        self.kill_checked(id, signal, all).await.map(|_| ())
    }

    pub async fn kill_checked(
        &self,
        id: &str,
        signal: i32,
        all: bool,
    ) -> Result<KillOutcome, OciError> {
        let mut args: Vec<OsString> = vec!["kill".into()];
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string().into());
        let out = self.run_retrying("kill", id, &args).await?;
        if out.status.success() {
            return Ok(KillOutcome::Signalled);
        }
        let msg = error_text(&out.stderr);
        if is_gone(&msg) {
            Ok(KillOutcome::NoSuchContainer)
        } else if is_not_running(&msg) {
            Ok(KillOutcome::NotRunning)
        } else {
            Err(self.failure("kill", id, &out))
        }
    }

    /// Removes the container from the runtime; an absent container is success.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        let mut args: Vec<OsString> = vec!["delete".into()];
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        let out = self.run_retrying("delete", id, &args).await?;
        if out.status.success() || is_gone(&error_text(&out.stderr)) {
            Ok(())
        } else {
            Err(self.failure("delete", id, &out))
        }
    }

    /// The runtime's view of the container; None if it does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, OciError> {
        let out = self
            .run_retrying("state", id, &["state".into(), id.into()])
            .await?;
        if !out.status.success() {
            if is_gone(&error_text(&out.stderr)) {
                return Ok(None);
            }
            return Err(self.failure("state", id, &out));
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| OciError::Protocol {
                id: id.to_string(),
                what: format!("bad state JSON from {}: {e}", self.binary.display()),
            })
    }

    /// Applies new resource limits to a running container.
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), OciError> {
        let body = serde_json::to_vec(resources).map_err(|e| OciError::Protocol {
            id: id.to_string(),
            what: format!("encode resources: {e}"),
        })?;
        let args: Vec<OsString> =
            vec!["update".into(), "--resources".into(), "-".into(), id.into()];
        let out = self
            .run("update", id, &args, Some(body), COMMAND_TIMEOUT)
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure("update", id, &out))
        }
    }

    /// Finds out whether `binary` can run containers here. Never fails: an unusable runtime is
    /// returned as [`HandlerStatus::Unavailable`] with the reason. `features` failing is not
    /// fatal (older runtimes lack the command): `features` is then None.
    pub async fn probe(name: &str, binary: &Path, root: &Path) -> Handler {
        Self::probe_with(
            name,
            binary,
            root,
            Vec::new(),
            HandlerKind::of_binary(binary),
        )
        .await
    }

    /// [`Handler::probe`] with global flags and an explicit kind.
    pub async fn probe_with(
        name: &str,
        binary: &Path,
        root: &Path,
        global_args: Vec<String>,
        kind: HandlerKind,
    ) -> Handler {
        let mut h = Self::probe_untried(name, binary, root, global_args, kind).await;
        h.run_trial().await;
        h
    }

    /// Runs the trial container of a handler [`Handler::probe_untried`] found runnable: its status
    /// stays Available only if the container ran.
    pub async fn run_trial(&mut self) {
        if let HandlerStatus::Available { version } = &self.status {
            let version = version.clone();
            self.status = match crate::probe::trial_container(self, PROBE_TIMEOUT).await {
                Ok(()) => HandlerStatus::Available { version },
                Err(reason) => HandlerStatus::Unavailable {
                    reason: format!("cannot run a container on this host: {reason}"),
                },
            };
        }
    }

    /// [`Handler::probe_with`] without the trial container: Available (with the version) means only
    /// that the binary answers `--version` and its state root exists; [`Handler::run_trial`] decides.
    pub async fn probe_untried(
        name: &str,
        binary: &Path,
        root: &Path,
        global_args: Vec<String>,
        kind: HandlerKind,
    ) -> Handler {
        let mut h = Handler {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            root: root.to_path_buf(),
            status: HandlerStatus::Unavailable {
                reason: String::new(),
            },
            features: None,
            systemd_cgroup: false,
            global_args,
            kind,
        };
        let unavailable = |reason: String| HandlerStatus::Unavailable { reason };
        if !binary.is_file() {
            h.status = unavailable(format!("binary {} not found", binary.display()));
            return h;
        }
        let version = match h.plain(&["--version"]).await {
            Ok(text) => text.lines().next().unwrap_or_default().trim().to_string(),
            Err(e) => {
                h.status = unavailable(format!("`{} --version` failed: {e}", binary.display()));
                return h;
            }
        };
        if let Ok(text) = h.plain(&["features"]).await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                h.features = Some(RuntimeFeatures::parse(v));
            }
        }
        if let Err(e) = std::fs::create_dir_all(root) {
            h.status = unavailable(format!("cannot create state root {}: {e}", root.display()));
            return h;
        }
        h.status = HandlerStatus::Available { version };
        h
    }

    /// Runs the binary without `--root` and returns stdout; stderr is the error.
    async fn plain(&self, args: &[&str]) -> Result<String, String> {
        let fut = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
            Ok(Ok(o)) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            Ok(Ok(o)) => Err(format!(
                "{}: {}",
                o.status,
                error_text(&[o.stderr, o.stdout].concat())
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("timed out after {PROBE_TIMEOUT:?}")),
        }
    }
}

/// What [`Handler::kill_checked`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    Signalled,
    NotRunning,
    NoSuchContainer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logrus_error_text() {
        let s = b"time=\"2026-11-25T10:34:57Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(error_text(s), "container \"x\" does not exist");
        assert_eq!(error_text(b"  plain failure\n"), "plain failure");
        assert!(is_gone(&error_text(s)));
    }

    #[test]
    fn only_the_seal_ebusy_failure_is_retried() {
        // youki 0.7.0 (anyhow context around pentacle::ensure_sealed in its main).
        let youki = b"Error: failed to seal /proc/self/exe\n\nCaused by:\n    Device or resource busy (os error 16)\n";
        assert!(is_transient(&error_text(youki)));
        assert!(!is_transient("container \"x\" does not exist"));
        assert!(!is_transient("container not running"));
        assert!(!is_transient("permission denied"));
        assert!(!is_transient(""));
    }

    #[test]
    fn runsc_is_a_sandbox_runtime() {
        assert_eq!(
            HandlerKind::of_binary(Path::new("/usr/bin/runsc")),
            HandlerKind::Sandbox
        );
        assert_eq!(
            HandlerKind::of_binary(Path::new("runsc")),
            HandlerKind::Sandbox
        );
        assert_eq!(
            HandlerKind::of_binary(Path::new("/usr/sbin/runc")),
            HandlerKind::Oci
        );
        assert_eq!(HandlerKind::of_binary(Path::new("youki")), HandlerKind::Oci);
    }

    #[test]
    fn json_log() {
        let log = "{\"level\":\"debug\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"boom\"}\nnot json\n";
        assert_eq!(json_log_errors(log), vec!["boom".to_string()]);
    }

    #[test]
    fn features_parse_with_absent_fields() {
        let f = RuntimeFeatures::parse(serde_json::json!({
            "ociVersionMax": "1.0.2-dev",
            "mountOptions": ["bind", "rro"],
            "linux": {"namespaces": ["pid", "user"], "cgroup": {"v1": true}, "seccomp": {"enabled": true}}
        }));
        assert!(f.recursive_read_only_mounts && f.cgroup_v1 && f.seccomp);
        assert!(!f.cgroup_v2 && !f.user_namespaces && !f.apparmor);
        assert_eq!(f.namespaces, vec!["pid", "user"]);
        assert_eq!(f.oci_version_max.as_deref(), Some("1.0.2-dev"));
        let empty = RuntimeFeatures::parse(serde_json::json!({}));
        assert!(empty.namespaces.is_empty() && !empty.seccomp);
    }
}
