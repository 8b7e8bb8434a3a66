//! CRIU discovery: whether checkpointing could work on this host, and if not, why.
//!
//! Probed once at start (`criu check`, as CRI-O does); the answer goes into the feature table, the
//! verbose Status and the error of CheckpointContainer, so an operator sees "CRIU is not installed"
//! apart from "CRIU is installed but does not work on this kernel", with CRIU's own words.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long `criu check` may take before it counts as not working.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// CRIU's report is kept to this many bytes (its errors are a few lines).
const MAX_MESSAGE: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Criu {
    /// No CRIU binary where the config says (`criu_path`).
    Missing { binary: PathBuf },
    /// The binary is there but `criu check` fails (or cannot run): CRIU's own message.
    Broken {
        binary: PathBuf,
        version: String,
        message: String,
    },
    /// `criu check` passes.
    Works { binary: PathBuf, version: String },
}

impl Criu {
    /// Why checkpointing is unavailable here, in one sentence.
    pub fn reason(&self) -> String {
        match self {
            Criu::Missing { binary } => format!(
                "CRIU is not installed (no executable {} found)",
                binary.display()
            ),
            Criu::Broken {
                binary,
                version,
                message,
            } => format!(
                "CRIU {version} ({}) does not work on this host: `criu check` says: {message}",
                binary.display()
            ),
            Criu::Works { binary, version } => format!(
                "CRIU {version} ({}) passes `criu check`, but crius does not implement checkpointing",
                binary.display()
            ),
        }
    }
}

/// Finds `binary` (a path, or a bare name searched in PATH).
fn locate(binary: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if binary.components().count() > 1 || binary.is_absolute() {
        return executable(binary).then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| executable(p))
}

/// Runs `bin args`, returning (success, stdout+stderr) or an error text; killed after `timeout`.
fn run(bin: &Path, args: &[&str], timeout: Duration) -> Result<(bool, String), String> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    // Both pipes are drained at once so a chatty child never blocks on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{} {}` did not finish within {}s",
                    bin.display(),
                    args.join(" "),
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", bin.display())),
        }
    };
    let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    Ok((status.success(), text))
}

fn squash(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut s = lines.join("; ");
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Probes CRIU (blocking: runs `criu --version` and `criu check`).
pub fn probe(binary: &Path) -> Criu {
    let Some(bin) = locate(binary) else {
        return Criu::Missing {
            binary: binary.to_path_buf(),
        };
    };
    let version = match run(&bin, &["--version"], PROBE_TIMEOUT) {
        Ok((_, text)) => text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Version:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "(unknown version)".into()),
        Err(_) => "(unknown version)".into(),
    };
    match run(&bin, &["check"], PROBE_TIMEOUT) {
        Ok((true, _)) => Criu::Works {
            binary: bin,
            version,
        },
        Ok((false, text)) => Criu::Broken {
            binary: bin,
            version,
            message: {
                let m = squash(&text);
                if m.is_empty() {
                    "failed without a message".into()
                } else {
                    m
                }
            },
        },
        Err(message) => Criu::Broken {
            binary: bin,
            version,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_reported_as_not_installed() {
        let c = probe(Path::new("/nonexistent/crius-test-criu"));
        assert!(matches!(c, Criu::Missing { .. }));
        assert!(c.reason().contains("not installed"), "{}", c.reason());
    }

    #[test]
    fn a_failing_check_keeps_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("criu");
        std::fs::write(
            &bin,
            "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Version: 9.9'; exit 0; }\necho 'Error (criu/vdso.c:1): vdso: boom' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        match probe(&bin) {
            Criu::Broken {
                version, message, ..
            } => {
                assert_eq!(version, "9.9");
                assert!(message.contains("vdso: boom"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_output_is_cut_on_a_char_boundary() {
        let s = squash(&"é".repeat(3000));
        assert!(s.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
