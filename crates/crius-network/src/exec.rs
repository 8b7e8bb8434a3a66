//! Running one CNI plugin binary with the CNI exec protocol: CNI_* environment, the network config on
//! stdin, a result or an error object on stdout, all bounded by a timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::NetworkError;

/// The per-call CNI environment (everything but the config, which goes to stdin).
pub(crate) struct Invocation<'a> {
    pub command: &'static str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    /// CNI_PATH: the bin dirs joined with ':' (plugins look up their IPAM plugin there).
    pub path: &'a str,
}

/// Runs `binary` and returns its stdout parsed as JSON (`None` when it printed nothing, as DEL and
/// CHECK do).
pub(crate) async fn run_plugin(
    binary: &Path,
    plugin: &str,
    inv: &Invocation<'_>,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Option<Value>, NetworkError> {
    let mut cmd = Command::new(binary);
    // The daemon's own CNI_* variables (if any) must not leak into a pod's invocation.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", inv.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Off the async workers: fork/exec of the daemon takes milliseconds.
    let mut child = tokio::task::spawn_blocking(move || cmd.spawn())
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| NetworkError::io(binary, e))?;
    let mut pipe = child.stdin.take();
    let input = stdin.to_vec();
    let run = async move {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells the story.
        if let Some(p) = pipe.as_mut() {
            let _ = p.write_all(&input).await;
        }
        drop(pipe);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(out) => out.map_err(|e| NetworkError::io(binary, e))?,
        Err(_) => {
            return Err(NetworkError::Timeout {
                plugin: plugin.to_string(),
                command: inv.command.to_string(),
                after: timeout,
            })
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(plugin_error(
            plugin,
            inv.command,
            &stdout,
            &stderr,
            output.status,
        ));
    }
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin, command = inv.command, stderr = %stderr.trim(), "CNI plugin stderr");
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| NetworkError::BadResult {
            plugin: plugin.to_string(),
            command: inv.command.to_string(),
            reason: format!("{e}: {}", truncate(stdout.trim(), 512)),
        })
}

/// The CNI error object from stdout when there is one, else whatever the plugin said on stderr.
fn plugin_error(
    plugin: &str,
    command: &str,
    stdout: &str,
    stderr: &str,
    status: std::process::ExitStatus,
) -> NetworkError {
    let parsed: Option<Value> = serde_json::from_str(stdout).ok();
    let (code, msg, details) = match parsed.as_ref().and_then(Value::as_object) {
        Some(obj) if obj.contains_key("msg") || obj.contains_key("code") => (
            obj.get("code").and_then(Value::as_u64).unwrap_or(0),
            obj.get("msg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            obj.get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => {
            let text = if !stderr.trim().is_empty() {
                stderr.trim()
            } else {
                stdout.trim()
            };
            let msg = if text.is_empty() {
                format!("exited with {status}")
            } else {
                truncate(text, 1024).to_string()
            };
            (0, msg, String::new())
        }
    };
    NetworkError::Plugin {
        plugin: plugin.to_string(),
        command: command.to_string(),
        code,
        msg,
        details,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn inv() -> Invocation<'static> {
        Invocation {
            command: "ADD",
            container_id: "c1",
            netns: "/x",
            ifname: "eth0",
            args: "A=1",
            path: "/bin",
        }
    }

    #[tokio::test]
    async fn passes_env_and_stdin_and_parses_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "echoer",
            r#"in=$(cat); printf '{"env":"%s %s %s %s %s %s","in":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$in""#,
        );
        let out = run_plugin(&p, "echoer", &inv(), br#"{"k":1}"#, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out["env"], "ADD c1 /x eth0 A=1 /bin");
        assert_eq!(out["in"]["k"], 1);
    }

    #[tokio::test]
    async fn error_object_and_plain_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "bad",
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"boom","details":"more"}'; exit 1"#,
        );
        match run_plugin(&p, "bad", &inv(), b"{}", Duration::from_secs(10)).await {
            Err(NetworkError::Plugin {
                plugin,
                command,
                code,
                msg,
                details,
            }) => {
                assert_eq!(
                    (
                        plugin.as_str(),
                        command.as_str(),
                        code,
                        msg.as_str(),
                        details.as_str()
                    ),
                    ("bad", "ADD", 7, "boom", "more")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let p = script(dir.path(), "crash", "echo 'panic: oops' >&2; exit 2");
        let err = run_plugin(&p, "crash", &inv(), b"{}", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panic: oops"), "{err}");
        let p = script(dir.path(), "garbage", "echo not-json");
        let err = run_plugin(&p, "garbage", &inv(), b"{}", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::BadResult { .. }), "{err}");
        let p = script(dir.path(), "quiet", "exit 0");
        assert!(
            run_plugin(&p, "quiet", &inv(), b"{}", Duration::from_secs(10))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn timeout_kills() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "slow", "exec sleep 30");
        let start = std::time::Instant::now();
        let err = run_plugin(&p, "slow", &inv(), b"{}", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
