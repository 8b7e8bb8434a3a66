//! What one probe found on one endpoint.

use serde::Serialize;

/// One verdict per feature and endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Accepted, and the effect is there inside the container.
    Works,
    /// A clear gRPC error at once, or an output field reported absent: correct for an unsupported
    /// feature (the kubelet can tell).
    FailsFast,
    /// The runtime advertises the feature (Status handler/runtime features, or by filling a field)
    /// but the effect is wrong or the request is refused.
    AdvertisedButBroken,
    /// Accepted, effect absent, not advertised: a policy violation.
    SilentlyIgnored,
    /// The surface is newer than the CRI this checker speaks, and the endpoint does not refuse it
    /// in a way the checker can see.
    NotInCriVersion,
    /// No answer within the probe's time bound.
    Hang,
    /// The probe could not measure (its set-up failed, or the host lacks what the effect needs).
    Inconclusive,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::Works,
        Verdict::FailsFast,
        Verdict::AdvertisedButBroken,
        Verdict::SilentlyIgnored,
        Verdict::NotInCriVersion,
        Verdict::Hang,
        Verdict::Inconclusive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Works => "works",
            Verdict::FailsFast => "fails fast",
            Verdict::AdvertisedButBroken => "advertised but broken",
            Verdict::SilentlyIgnored => "silently ignored",
            Verdict::NotInCriVersion => "not in this CRI version",
            Verdict::Hang => "hang",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Short form for the terminal table.
    pub fn short(self) -> &'static str {
        match self {
            Verdict::Works => "works",
            Verdict::FailsFast => "fails-fast",
            Verdict::AdvertisedButBroken => "ADV-BROKEN",
            Verdict::SilentlyIgnored => "IGNORED",
            Verdict::NotInCriVersion => "not-in-cri",
            Verdict::Hang => "HANG",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// A correct answer for a feature the runtime does not support.
    pub fn is_correct_refusal(self) -> bool {
        matches!(self, Verdict::FailsFast | Verdict::NotInCriVersion)
    }

    /// Breaks the policy's "never silently" rule (or hides it behind a hang).
    pub fn is_violation(self) -> bool {
        matches!(
            self,
            Verdict::SilentlyIgnored | Verdict::AdvertisedButBroken | Verdict::Hang
        )
    }
}

/// A verdict with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub evidence: String,
    /// What the runtime advertises for the feature, where the CRI has a discovery field.
    pub advertised: Option<bool>,
}

impl Outcome {
    pub fn new(verdict: Verdict, evidence: impl Into<String>) -> Outcome {
        Outcome {
            verdict,
            evidence: evidence.into(),
            advertised: None,
        }
    }

    pub fn works(evidence: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Works, evidence)
    }

    pub fn inconclusive(evidence: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Inconclusive, evidence)
    }

    /// The feature's request was refused with `status`.
    pub fn refused(what: &str, status: &tonic::Status, advertised: Option<bool>) -> Outcome {
        let msg = format!("{what} refused: {:?}: {}", status.code(), status.message());
        let verdict = if advertised == Some(true) {
            Verdict::AdvertisedButBroken
        } else {
            Verdict::FailsFast
        };
        Outcome {
            verdict,
            evidence: if advertised == Some(true) {
                format!("advertised, but {msg}")
            } else {
                msg
            },
            advertised,
        }
    }

    /// The request was accepted but the effect is absent or wrong.
    pub fn effect_absent(evidence: impl Into<String>, advertised: Option<bool>) -> Outcome {
        let verdict = if advertised == Some(true) {
            Verdict::AdvertisedButBroken
        } else {
            Verdict::SilentlyIgnored
        };
        Outcome {
            verdict,
            evidence: evidence.into(),
            advertised,
        }
    }

    pub fn with_advertised(mut self, advertised: Option<bool>) -> Outcome {
        self.advertised = advertised;
        if self.verdict == Verdict::Works && advertised == Some(false) {
            self.evidence
                .push_str("; works although the runtime does not advertise it");
        }
        self
    }
}
