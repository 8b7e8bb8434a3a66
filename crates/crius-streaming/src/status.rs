//! The remotecommand error channel: how the end of an exec/attach is reported to the client.
//! Protocol v4 and later carry a `metav1.Status` JSON object (the client turns
//! `NonZeroExitCode` into an exit code); older protocols carry the bare error text and nothing
//! on success.

use serde_json::json;

/// How a session ended, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The exec'd process exited with this code.
    Exited(i32),
    /// An attach ended without error.
    Detached,
    /// The backend failed; the message goes to the client.
    Failed(String),
}

/// Renders `cmd` the way Go prints a `[]string` with `%v`, which is how the kubelet-side
/// runtimes word the non-zero exit message that clients show to users.
fn go_list(cmd: &[String]) -> String {
    format!("[{}]", cmd.join(" "))
}

fn exit_message(code: i32, cmd: &[String]) -> String {
    format!(
        "command terminated with non-zero exit code: error executing command {}, exit code {code}",
        go_list(cmd)
    )
}

/// The bytes to write on the error channel for `outcome`, or `None` when the protocol reports
/// success by silence.
pub(crate) fn encode(outcome: &Outcome, cmd: &[String], v4: bool) -> Option<Vec<u8>> {
    if !v4 {
        return match outcome {
            Outcome::Exited(0) | Outcome::Detached => None,
            Outcome::Exited(code) => Some(exit_message(*code, cmd).into_bytes()),
            Outcome::Failed(msg) => Some(format!("Internal error occurred: {msg}").into_bytes()),
        };
    }
    let value = match outcome {
        Outcome::Exited(0) | Outcome::Detached => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": exit_message(*code, cmd),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {msg}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    };
    Some(value.to_string().into_bytes())
}

/// The end of a session as decoded by a client from the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success (v4 `Success` status, or an empty error channel on older protocols).
    Success,
    /// The command exited with this non-zero code.
    Code(i32),
    /// Any other failure, with the server's message.
    Error(String),
}

impl ExitStatus {
    /// The exit code, treating success as 0.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Success => Some(0),
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::Error(_) => None,
        }
    }

    /// Decodes what was read from the error channel until it closed.
    pub fn decode(bytes: &[u8], v4: bool) -> ExitStatus {
        if bytes.is_empty() {
            return ExitStatus::Success;
        }
        if !v4 {
            return ExitStatus::Error(String::from_utf8_lossy(bytes).into_owned());
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return ExitStatus::Error(format!(
                    "undecodable status {:?}: {e}",
                    String::from_utf8_lossy(bytes)
                ))
            }
        };
        if value["status"] == "Success" {
            return ExitStatus::Success;
        }
        if value["reason"] == "NonZeroExitCode" {
            let causes = value["details"]["causes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for cause in causes {
                if cause["reason"] == "ExitCode" {
                    if let Some(code) = cause["message"].as_str().and_then(|m| m.parse().ok()) {
                        return ExitStatus::Code(code);
                    }
                }
            }
        }
        ExitStatus::Error(
            value["message"]
                .as_str()
                .unwrap_or("unknown failure")
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_success_is_exact() {
        let b = encode(&Outcome::Exited(0), &[], true).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&b),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    #[test]
    fn v4_exit_code_round_trip() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 7".into()];
        let b = encode(&Outcome::Exited(7), &cmd, true).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "7");
        assert!(v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("command terminated with non-zero exit code: "));
        assert_eq!(ExitStatus::decode(&b, true), ExitStatus::Code(7));
    }

    #[test]
    fn old_protocols_are_silent_on_success() {
        assert_eq!(encode(&Outcome::Exited(0), &[], false), None);
        assert_eq!(encode(&Outcome::Detached, &[], false), None);
        let b = encode(&Outcome::Failed("boom".into()), &[], false).unwrap_or_default();
        assert_eq!(b, b"Internal error occurred: boom");
        assert_eq!(ExitStatus::decode(&[], false), ExitStatus::Success);
    }

    #[test]
    fn v4_internal_error() {
        let b = encode(&Outcome::Failed("no such container".into()), &[], true).unwrap_or_default();
        match ExitStatus::decode(&b, true) {
            ExitStatus::Error(m) => assert!(m.contains("no such container"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
