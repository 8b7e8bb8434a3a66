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
        .prefix(&trial_dir_prefix())
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let id = trial_id();
    build_bundle(dir.path(), &id, &["/bin/true"], None)
        .map_err(|e| format!("bundle in {}: {e}", dir.path().display()))?;
    run_trial_bundle(h, dir.path(), &id, step_timeout).await
}

/// What the seccomp trial found: whether the container's own process ran under the spec's filter,
/// and whether a process started in it by `<runtime> exec` did too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompTrial {
    pub init: Result<(), String>,
    pub exec: Result<(), String>,
}

/// Whether the handler applies a spec's seccomp filter to the container's own process (see
/// [`trial_seccomp_full`]).
pub async fn trial_seccomp(h: &Handler, step_timeout: Duration) -> Result<(), String> {
    trial_seccomp_full(h, step_timeout).await.init
}

/// The script both trial processes run: whether `chdir` failed (the filter makes it fail).
const CD_TEST: &str = "if cd / 2>/dev/null; then echo ran; else echo filtered; fi";

/// Whether the handler applies a spec's seccomp filter: a trial container whose filter makes
/// `chdir` fail runs `cd /` and writes whether that failed into a bound directory; while it runs,
/// one process started by `<runtime> exec` (as for ExecSync) does the same and prints it. A runtime
/// that ignores `linux.seccomp` (gVisor's runsc without `--oci-seccomp`) fails `init`; one that
/// filters only the container's own process (youki 0.7.0, runsc 20221219) fails `exec`.
pub async fn trial_seccomp_full(h: &Handler, step_timeout: Duration) -> SeccompTrial {
    let failed = |e: String| SeccompTrial {
        init: Err(e.clone()),
        exec: Err(format!("no trial container: {e}")),
    };
    let dir = match tempfile::Builder::new()
        .prefix(&trial_dir_prefix())
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => return failed(format!("temp dir: {e}")),
    };
    let id = trial_id();
    let out = dir.path().join("out");
    if let Err(e) = std::fs::create_dir_all(&out) {
        return failed(format!("{}: {e}", out.display()));
    }
    let filter = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    // The container's process stays up (bounded) until the exec'd one has run.
    let init = format!(
        "{CD_TEST} > /out/result; i=0; while [ ! -e /out/exec ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done"
    );
    if let Err(e) = build_bundle(
        dir.path(),
        &id,
        &["/bin/sh", "-c", &init],
        Some((filter, out.as_path())),
    ) {
        return failed(format!("bundle in {}: {e}", dir.path().display()));
    }
    let exec_process = serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["/bin/sh", "-c", format!("{CD_TEST}; : > /out/exec")],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "noNewPrivileges": true
    });
    let exec_process: oci_spec::runtime::Process = match serde_json::from_value(exec_process) {
        Ok(p) => p,
        Err(e) => return failed(format!("exec process: {e}")),
    };
    let (ran, exec) =
        run_trial_bundle_with(h, dir.path(), &id, step_timeout, Some(&exec_process)).await;
    if let Err(e) = ran {
        return failed(e);
    }
    let exec = match exec {
        None => Err("the trial container was not running: no exec".to_string()),
        Some(Err(e)) => Err(format!("`{} exec` in the trial container: {e}", h.name)),
        Some(Ok(o)) => match String::from_utf8_lossy(&o.stdout).trim() {
            "filtered" => Ok(()),
            "ran" => Err(format!(
                "`{} exec` runs processes without the container's seccomp filter (the exec trial's chdir was not refused)",
                h.name
            )),
            other => Err(format!(
                "`{} exec` in the trial container: exit {}, output {other:?}, stderr {:?}",
                h.name,
                o.exit_code,
                crate::handler::error_text(&o.stderr)
            )),
        },
    };
    // runsc reports the container stopped before its gofer has written the file: wait for it.
    let result = out.join("result");
    let deadline = Instant::now() + step_timeout;
    let text = loop {
        match std::fs::read_to_string(&result) {
            Ok(t) if t.ends_with('\n') => break t,
            _ if Instant::now() >= deadline => {
                return SeccompTrial {
                    init: Err(format!(
                        "the seccomp trial container wrote no result in {step_timeout:?}"
                    )),
                    exec,
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let init = match text.trim() {
        "filtered" => Ok(()),
        other => Err(format!(
            "the runtime ran the trial container without its seccomp filter ({other})"
        )),
    };
    SeccompTrial { init, exec }
}

/// The prefix of a trial's bundle directory (in the temp dir): it names this process, so that
/// [`sweep_dead_trials`] can tell the leftovers of a dead daemon from a live one's trials.
pub fn trial_dir_prefix() -> String {
    format!("crius-probe-{}-", std::process::id())
}

/// The prefixes of trial leftovers named `<prefix><pid>-…`, as cgroups and temp dirs.
const TRIAL_PREFIXES: [&str; 2] = ["crius-probe-", "crius-userns-probe-"];

/// The pid a trial leftover's name carries, when it is one of a process that no longer exists.
fn dead_owner(name: &str) -> Option<u32> {
    let rest = TRIAL_PREFIXES.iter().find_map(|p| name.strip_prefix(p))?;
    let pid: u32 = rest.split('-').next()?.parse().ok()?;
    (!Path::new("/proc").join(pid.to_string()).exists()).then_some(pid)
}

/// Removes what the trials of dead daemons left behind: a daemon killed while a trial ran (kill -9,
/// or a stop during a sandbox handler's deferred trials) leaves the trial's cgroup
/// `/crius-probe-<pid>-<n>` in every hierarchy and its bundle directory in the temp dir. Only
/// leftovers of processes that no longer exist are touched: cgroups by rmdir (which refuses a
/// cgroup with processes), directories only when nothing is mounted below them.
/// Returns a line per leftover found, saying what became of it.
pub fn sweep_dead_trials() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    sweep_dead_trials_in(&std::env::temp_dir(), &mountinfo)
}

fn sweep_dead_trials_in(tmp: &Path, mountinfo: &str) -> Vec<String> {
    let mut said = Vec::new();
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mnt) = pre.split(' ').nth(4) else {
            continue;
        };
        let fstype = post.split(' ').next().unwrap_or_default();
        if fstype == "cgroup" || fstype == "cgroup2" {
            let Ok(entries) = std::fs::read_dir(mnt) else {
                continue;
            };
            for e in entries.flatten() {
                if dead_owner(&e.file_name().to_string_lossy()).is_some() {
                    said.push(match std::fs::remove_dir(e.path()) {
                        Ok(()) => format!("removed trial leftover cgroup {}", e.path().display()),
                        Err(err) => format!("trial leftover cgroup {}: {err}", e.path().display()),
                    });
                }
            }
        }
        mounts.push(mnt.to_string());
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return said;
    };
    for e in entries.flatten() {
        if dead_owner(&e.file_name().to_string_lossy()).is_none() {
            continue;
        }
        let dir = e.path();
        let below = format!("{}/", dir.display());
        if mounts
            .iter()
            .any(|m| m.starts_with(&below) || *m == dir.display().to_string())
        {
            said.push(format!(
                "trial leftover {} kept: something is mounted below it",
                dir.display()
            ));
            continue;
        }
        said.push(match std::fs::remove_dir_all(&dir) {
            Ok(()) => format!("removed trial leftover {}", dir.display()),
            Err(err) => format!("trial leftover {}: {err}", dir.display()),
        });
    }
    said
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
    run_trial_bundle_with(h, dir, id, step_timeout, None)
        .await
        .0
}

/// [`run_trial_bundle`], also running `exec` in the container through `<runtime> exec` once it is
/// started (its init must then wait for it); the exec's output is the second result (`None`: the
/// container never started). A failed exec skips the wait: the forced delete stops the container.
async fn run_trial_bundle_with(
    h: &Handler,
    dir: &Path,
    id: &str,
    step_timeout: Duration,
    exec: Option<&oci_spec::runtime::Process>,
) -> (
    Result<(), String>,
    Option<Result<crate::ExecOutput, String>>,
) {
    let mut exec_out = None;
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
        if let Some(p) = exec {
            let r = h
                .exec_sync(&id, p, Some(step_timeout), 4096)
                .await
                .map_err(|e| e.to_string());
            let done = matches!(&r, Ok(o) if o.exit_code == 0 && !o.timed_out);
            exec_out = Some(r);
            if !done {
                return Ok(());
            }
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
    let result = result.and_then(|()| deleted.map_err(|e| e.to_string()));
    (result, exec_out)
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

#[cfg(test)]
mod sweep_tests {
    use super::*;

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = c.id();
        c.wait().expect("wait true");
        pid
    }

    #[test]
    fn leftovers_of_dead_daemons_go_live_ones_and_mounted_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let mk = |name: String| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(d.join("rootfs/x")).unwrap();
            std::fs::write(d.join("config.json"), b"{}").unwrap();
            d
        };
        let gone = mk(format!("crius-probe-{dead}-abc"));
        let gone_userns = mk(format!("crius-userns-probe-{dead}-abc"));
        let live = mk(format!("crius-probe-{}-abc", std::process::id()));
        let mounted = mk(format!("crius-probe-{dead}-mnt"));
        let other = mk(format!("crius-other-{dead}-abc"));
        let mountinfo = format!(
            "36 35 98:0 / {} rw - nsfs nsfs rw\n",
            mounted.join("ns/user").display()
        );
        let said = sweep_dead_trials_in(tmp.path(), &mountinfo);
        assert!(!gone.exists() && !gone_userns.exists(), "{said:?}");
        assert!(
            live.exists() && mounted.exists() && other.exists(),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|l| l.contains("kept: something is mounted")),
            "{said:?}"
        );
    }

    #[test]
    fn only_trial_names_with_a_pid_are_leftovers() {
        let dead = dead_pid();
        assert_eq!(dead_owner(&format!("crius-probe-{dead}-1234")), Some(dead));
        assert_eq!(
            dead_owner(&format!("crius-probe-{}-1", std::process::id())),
            None
        );
        assert_eq!(dead_owner("crius-probe-abc"), None);
        assert_eq!(dead_owner(&format!("crius-e2e-{dead}")), None);
    }
}
