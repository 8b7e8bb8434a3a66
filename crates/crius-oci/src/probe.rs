//! The trial container behind [`crate::Handler::probe`]: a runtime that answers `--version` may
//! still be unable to create containers on this host (crun 1.8.1 rejects a hybrid cgroup v1
//! layout), and the only reliable test is to create, start and delete one.
//!
//! The rootfs is an empty directory with the host's /usr (and friends) bound read-only, so no
//! image is needed; the process is `/bin/true`.

use std::ffi::OsString;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::handler::{json_log_errors, Handler};

pub(crate) async fn trial_container(h: &Handler, step_timeout: Duration) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("crius-probe-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let id = trial_id();
    build_bundle(dir.path(), &id, &["/bin/true"], None)
        .map_err(|e| format!("bundle in {}: {e}", dir.path().display()))?;
    run_trial_bundle(h, dir.path(), &id, step_timeout).await
}

/// Whether the handler applies a spec's seccomp filter: a trial container whose filter makes
/// `chdir` fail runs `cd /` and writes whether that failed into a bound directory. A
/// runtime that ignores `linux.seccomp` (gVisor's runsc without `--oci-seccomp`) fails this.
pub async fn trial_seccomp(h: &Handler, step_timeout: Duration) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("crius-probe-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let id = trial_id();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let filter = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    build_bundle(
        dir.path(),
        &id,
        &[
            "/bin/sh",
            "-c",
            "if cd / 2>/dev/null; then echo ran; else echo filtered; fi > /out/result",
        ],
        Some((filter, out.as_path())),
    )
    .map_err(|e| format!("bundle in {}: {e}", dir.path().display()))?;
    run_trial_bundle(h, dir.path(), &id, step_timeout).await?;
    // runsc reports the container stopped before its gofer has written the file: wait for it.
    let result = out.join("result");
    let deadline = Instant::now() + step_timeout;
    let text = loop {
        match std::fs::read_to_string(&result) {
            Ok(t) if t.ends_with('\n') => break t,
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "the seccomp trial container wrote no result in {step_timeout:?}"
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    match text.trim() {
        "filtered" => Ok(()),
        other => Err(format!(
            "the runtime ran the trial container without its seccomp filter ({other})"
        )),
    }
}

/// A fresh id for a trial container; its cgroup must be `/<id>` so that `delete` removes it.
pub fn trial_id() -> String {
    format!("crius-probe-{}-{}", std::process::id(), rand_suffix())
}

/// Creates, starts, waits for and deletes the container of the bundle in `dir` (its `config.json`
/// must run something that exits at once). Used by the handler probe and by callers that try a
/// handler with a bundle of their own (e.g. a user-namespace trial).
pub async fn run_trial_bundle(
    h: &Handler,
    dir: &Path,
    id: &str,
    step_timeout: Duration,
) -> Result<(), String> {
    let id = id.to_string();
    let log = dir.join("runtime.log");
    let global = |cmd: &[&str]| -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--log".into(),
            log.clone().into(),
            "--log-format".into(),
            "json".into(),
        ];
        v.extend(cmd.iter().map(OsString::from));
        v
    };
    let why = |out: &crate::handler::RunOutput| -> String {
        let from_log =
            json_log_errors(&std::fs::read_to_string(&log).unwrap_or_default()).join("; ");
        if from_log.is_empty() {
            let e = crate::handler::error_text(&out.stderr);
            if e.is_empty() {
                format!("exit status {}", out.status)
            } else {
                e
            }
        } else {
            from_log
        }
    };
    let bundle = dir.to_string_lossy().into_owned();
    let result = async {
        // Not through `run`: a non-terminal container inherits the runtime's stdio, so piped
        // stdout/stderr would stay open (held by the trial's init) until it is started.
        let errfile = dir.join("create.stderr");
        let stderr =
            std::fs::File::create(&errfile).map_err(|e| format!("{}: {e}", errfile.display()))?;
        let mut child = tokio::process::Command::new(&h.binary)
            .arg("--root")
            .arg(&h.root)
            .args(&h.global_args)
            .args(global(&["create", "--bundle", &bundle, &id]))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("run {} create: {e}", h.binary.display()))?;
        let status = tokio::time::timeout(step_timeout, child.wait())
            .await
            .map_err(|_| {
                format!(
                    "{} create: timed out after {step_timeout:?}",
                    h.binary.display()
                )
            })?
            .map_err(|e| format!("wait for {} create: {e}", h.binary.display()))?;
        if !status.success() {
            let out = crate::handler::RunOutput {
                status,
                stdout: Vec::new(),
                stderr: std::fs::read(&errfile).unwrap_or_default(),
            };
            return Err(why(&out));
        }
        let out = h
            .run("start", &id, &global(&["start", &id]), None, step_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(why(&out));
        }
        // /bin/true exits at once; wait (bounded) for the runtime to see it stopped.
        let deadline = Instant::now() + step_timeout;
        loop {
            match h.state(&id).await {
                Ok(Some(s)) if s.status == "stopped" => break,
                Ok(None) => break,
                Ok(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(Some(s)) => {
                    return Err(format!(
                        "trial container still {} after {step_timeout:?}",
                        s.status
                    ))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
    .await;
    let deleted = h.delete(&id, true).await;
    remove_trial_cgroups(&id);
    result?;
    deleted.map_err(|e| e.to_string())
}

/// Removes the trial's cgroup (`/<id>`, empty by now) from every cgroup hierarchy: a runtime whose
/// `create` failed half-way (runsc joining a user namespace) leaves it behind, and `delete` then
/// knows no container to clean up.
fn remove_trial_cgroups(id: &str) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split(' ').next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(mnt) = pre.split(' ').nth(4) {
            // Only an empty cgroup can be removed; ENOENT is the usual case.
            let _ = std::fs::remove_dir(Path::new(mnt).join(id));
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
        .unwrap_or(0)
}

fn build_bundle(
    dir: &Path,
    id: &str,
    args: &[&str],
    seccomp: Option<(serde_json::Value, &Path)>,
) -> std::io::Result<()> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    std::fs::create_dir_all(rootfs.join("proc"))?;
    std::fs::create_dir_all(rootfs.join("dev"))?;
    for top in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(top);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // merged-/usr hosts: mirror the link, the target is bound below
            symlink(std::fs::read_link(&host)?, rootfs.join(top))?;
        } else if meta.is_dir() {
            std::fs::create_dir_all(rootfs.join(top))?;
            mounts.push(
                serde_json::json!({"destination": format!("/{top}"), "type": "bind",
                "source": host, "options": ["rbind", "ro", "nosuid", "nodev"]}),
            );
        }
    }
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "crius-probe",
        "mounts": mounts,
        "linux": {
            // top level, so that `delete` removes it entirely (a parent dir would stay behind)
            "cgroupsPath": format!("/{id}"),
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]
        }
    });
    if let Some((f, out)) = seccomp {
        config["linux"]["seccomp"] = f;
        // Written by the trial's process: the root is read-only.
        std::fs::create_dir_all(rootfs.join("out"))?;
        if let Some(m) = config["mounts"].as_array_mut() {
            m.push(
                serde_json::json!({"destination": "/out", "type": "bind", "source": out,
                                      "options": ["rbind", "rw"]}),
            )
        }
    }
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}
