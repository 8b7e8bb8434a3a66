//! SIG Node's CRI policy, applied twice: to the dataset's release history (did each beta/GA stage
//! have GA, non-experimental containerd and CRI-O releases at the moment of the Kubernetes release?)
//! and to the measured endpoints (which maturity may the feature claim, and which rule fails).
//!
//! The rules: alpha needs one implementation; beta (on or off by default) and GA need a release of
//! every participating runtime implementing the CRI surface, not experimental; a runtime that cannot
//! do a feature must fail fast, never silently.

use serde::Serialize;

use crate::dataset::{parse_date, parse_minor, Dataset, Feature, Runtime};
use crate::verdict::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    None,
    Alpha,
    Beta,
    BetaOn,
    Ga,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Alpha => "alpha",
            Stage::Beta => "beta",
            Stage::BetaOn => "beta (on)",
            Stage::Ga => "GA",
        }
    }
}

/// The stages a feature reached, with the Kubernetes minor of each.
pub fn stages(f: &Feature) -> Vec<(Stage, String)> {
    let mut out = Vec::new();
    for (s, v) in [
        (Stage::Alpha, &f.k8s.alpha),
        (Stage::Beta, &f.k8s.beta),
        (Stage::BetaOn, &f.k8s.default_on_beta),
        (Stage::Ga, &f.k8s.ga),
    ] {
        if let Some(v) = v {
            out.push((s, v.clone()));
        }
    }
    out
}

/// The feature's stage today (a revert to alpha wins over an earlier beta).
pub fn current_stage(f: &Feature) -> Stage {
    if f.status.as_deref() == Some("withdrawn") {
        return Stage::None;
    }
    if f.k8s.reverted_to_alpha.is_some() && f.k8s.ga.is_none() {
        return Stage::Alpha;
    }
    stages(f).last().map(|(s, _)| *s).unwrap_or(Stage::None)
}

/// One check of the history: a stage at a Kubernetes release, against one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryCheck {
    pub kep: u32,
    pub feature: String,
    pub stage: Stage,
    pub k8s: String,
    pub k8s_date: Option<String>,
    /// The date is marked for verification in the dataset (or only scheduled).
    pub date_unverified: bool,
    pub runtime: Runtime,
    pub release: Option<String>,
    pub release_date: Option<String>,
    pub outcome: HistoryOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HistoryOutcome {
    /// A supported release existed at the Kubernetes release.
    Ok,
    /// The supported release came this many days after the Kubernetes release.
    Late { days: i64 },
    /// No supported release at all (as of the dataset's snapshot).
    Missing,
    /// A date is not known, so the check cannot be made.
    Unknown,
}

impl HistoryCheck {
    pub fn is_slip(&self) -> bool {
        matches!(
            self.outcome,
            HistoryOutcome::Late { .. } | HistoryOutcome::Missing
        )
    }

    pub fn describe(&self) -> String {
        let when = match &self.k8s_date {
            Some(d) => format!(
                "{} ({d}{})",
                self.k8s,
                if self.date_unverified {
                    ", date unverified"
                } else {
                    ""
                }
            ),
            None => format!("{} (no date)", self.k8s),
        };
        let rel = match (&self.release, &self.release_date) {
            (Some(r), Some(d)) => format!("{} {r} ({d})", self.runtime.name()),
            (Some(r), None) => format!("{} {r}", self.runtime.name()),
            (None, _) => format!("{}: no supported release", self.runtime.name()),
        };
        match &self.outcome {
            HistoryOutcome::Ok => format!(
                "{} {} at {when}: ok, {rel}",
                self.feature,
                self.stage.label()
            ),
            HistoryOutcome::Late { days } => format!(
                "{} {} at {when}: {rel} came {days} days later",
                self.feature,
                self.stage.label()
            ),
            HistoryOutcome::Missing => {
                format!("{} {} at {when}: {rel}", self.feature, self.stage.label())
            }
            HistoryOutcome::Unknown => format!(
                "{} {} at {when}: {rel}, cannot compare",
                self.feature,
                self.stage.label()
            ),
        }
    }
}

/// Every beta / default-on beta / GA stage of every feature against every participating runtime.
pub fn history(d: &Dataset) -> Vec<HistoryCheck> {
    let mut out = Vec::new();
    for f in &d.features {
        if f.status.as_deref() == Some("withdrawn") {
            continue;
        }
        for (stage, v) in stages(f) {
            if stage == Stage::Alpha {
                continue;
            }
            // A default-on beta in the same release as the beta is one event, reported as BetaOn.
            if stage == Stage::Beta && f.k8s.default_on_beta.as_deref() == Some(v.as_str()) {
                continue;
            }
            let rel = d.k8s_release(&v);
            let k8s_day = rel.and_then(|r| parse_date(&r.date));
            for rt in f.participants() {
                let facts = f.runtime(rt);
                let release = facts.supported_release.clone();
                let release_day = release.as_deref().and_then(|r| d.runtime_date(rt, r));
                let outcome = match (k8s_day, &release, release_day) {
                    (_, None, _) => HistoryOutcome::Missing,
                    (Some(k), Some(_), Some(r)) if r <= k => HistoryOutcome::Ok,
                    (Some(k), Some(_), Some(r)) => HistoryOutcome::Late { days: r - k },
                    _ => HistoryOutcome::Unknown,
                };
                out.push(HistoryCheck {
                    kep: f.kep,
                    feature: f.name(),
                    stage,
                    k8s: v.clone(),
                    k8s_date: rel.map(|r| r.date.clone()),
                    date_unverified: rel.map(|r| r.verify || r.scheduled).unwrap_or(false),
                    runtime: rt,
                    release_date: release
                        .as_deref()
                        .and_then(|r| {
                            let key = format!("v{}", r.trim_start_matches('v'));
                            match rt {
                                Runtime::Containerd => d.releases.containerd.get(&key),
                                Runtime::Crio => d.releases.crio.get(&key),
                            }
                        })
                        .cloned(),
                    release,
                    outcome,
                });
            }
        }
    }
    out
}

/// The policy verdict for one feature.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturePolicy {
    pub kep: u32,
    pub feature: String,
    /// The stage Kubernetes gives the feature today.
    pub stage: Stage,
    /// The highest stage the facts (participating runtimes' releases) allow.
    pub history_allows: Stage,
    /// The highest stage the measured endpoints allow (None when nothing was measured).
    pub measured_allows: Option<Stage>,
    /// min(stage, history_allows, measured_allows).
    pub may_claim: Stage,
    /// The rules that fail, in words.
    pub rules_failed: Vec<String>,
}

impl FeaturePolicy {
    pub fn ok(&self) -> bool {
        self.rules_failed.is_empty()
    }
}

/// The stage the release facts allow: beta and GA need a supported release of every participant;
/// alpha needs one implementation somewhere.
fn history_allows(f: &Feature) -> (Stage, Vec<String>) {
    let participants = f.participants();
    let missing: Vec<_> = participants
        .iter()
        .filter(|rt| f.runtime(**rt).supported_release.is_none())
        .map(|rt| rt.name())
        .collect();
    if missing.is_empty() {
        return (Stage::Ga, vec![]);
    }
    let any = participants
        .iter()
        .any(|rt| f.runtime(*rt).first_release.is_some());
    let allows = if any { Stage::Alpha } else { Stage::None };
    (
        allows,
        vec![format!(
            "beta/GA need a non-experimental release of every runtime: none from {}",
            missing.join(", ")
        )],
    )
}

/// The stage the measured endpoints allow, and the rules they break.
pub fn measured_allows(verdicts: &[(String, Verdict)]) -> (Stage, Vec<String>) {
    let mut rules = Vec::new();
    for (ep, v) in verdicts {
        if v.is_violation() {
            rules.push(format!(
                "an unsupported feature must fail fast, never silently: {ep} is {}",
                v.label()
            ));
        }
    }
    let works = verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::Works)
        .count();
    let measurable = verdicts
        .iter()
        .filter(|(_, v)| *v != Verdict::Inconclusive)
        .count();
    let allows = if measurable > 0 && works == measurable {
        Stage::Ga
    } else {
        let not: Vec<_> = verdicts
            .iter()
            .filter(|(_, v)| *v != Verdict::Works && *v != Verdict::Inconclusive)
            .map(|(ep, _)| ep.as_str())
            .collect();
        if !not.is_empty() {
            rules.push(format!(
                "beta/GA need every runtime to implement it: not on {}",
                not.join(", ")
            ));
        }
        if works > 0 {
            Stage::Alpha
        } else {
            Stage::None
        }
    };
    (allows, rules)
}

/// Policy verdict of one feature: its stage against the facts and (when given) the measurements.
pub fn feature_policy(f: &Feature, measured: Option<&[(String, Verdict)]>) -> FeaturePolicy {
    let stage = current_stage(f);
    let (hist, mut hist_rules) = history_allows(f);
    if f.is_windows() {
        hist_rules
            .iter_mut()
            .for_each(|r| r.push_str(" (Windows: containerd only)"));
    }
    let mut rules_failed = Vec::new();
    if stage >= Stage::Beta && hist < stage {
        rules_failed.extend(hist_rules);
    }
    let measured_allows = measured.map(|m| {
        let (allows, rules) = measured_allows(m);
        let violations = rules.iter().filter(|r| r.contains("never silently"));
        rules_failed.extend(violations.cloned());
        if allows < stage && stage >= Stage::Beta {
            rules_failed.extend(
                rules
                    .iter()
                    .filter(|r| !r.contains("never silently"))
                    .cloned(),
            );
        }
        allows
    });
    let may_claim = stage.min(hist).min(measured_allows.unwrap_or(Stage::Ga));
    FeaturePolicy {
        kep: f.kep,
        feature: f.name(),
        stage,
        history_allows: hist,
        measured_allows,
        may_claim,
        rules_failed,
    }
}

/// Kubernetes minor `a` is before `b`.
pub fn minor_before(a: &str, b: &str) -> bool {
    matches!((parse_minor(a), parse_minor(b)), (Some(x), Some(y)) if x < y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        Dataset::embedded().unwrap()
    }

    fn slips_of<'a>(h: &'a [HistoryCheck], gate: &str) -> Vec<&'a HistoryCheck> {
        h.iter()
            .filter(|c| c.feature == gate && c.is_slip())
            .collect()
    }

    /// The slips the issue names must be flagged, each against containerd at the stated release.
    #[test]
    fn history_flags_the_known_slips() {
        let h = history(&data());
        for (gate, stage, k8s) in [
            ("ContainerCheckpoint", Stage::BetaOn, "1.30"),
            ("RecursiveReadOnlyMounts", Stage::BetaOn, "1.31"),
            ("KubeletCgroupDriverFromCRI", Stage::BetaOn, "1.31"),
            ("ImageVolume", Stage::Beta, "1.33"),
        ] {
            let s = slips_of(&h, gate);
            assert!(
                s.iter()
                    .any(|c| c.stage == stage && c.k8s == k8s && c.runtime == Runtime::Containerd),
                "{gate} {k8s}: {s:#?}"
            );
        }
        // containerd 2.0.0 came 84 days after Kubernetes 1.31.
        let rro = slips_of(&h, "RecursiveReadOnlyMounts");
        assert!(
            rro.iter()
                .any(|c| c.outcome == HistoryOutcome::Late { days: 84 }),
            "{rro:#?}"
        );
        // ImageVolume's beta was met by neither runtime: CRI-O's image_sub_path came in 1.33.0 too.
        let iv = slips_of(&h, "ImageVolume");
        assert!(
            iv.iter()
                .any(|c| c.runtime == Runtime::Crio && c.k8s == "1.33"),
            "{iv:#?}"
        );
        // Later stages of the same features are fine: RRO GA 1.33, cgroup driver GA 1.34.
        assert!(!rro.iter().any(|c| c.k8s == "1.33"));
        assert!(!slips_of(&h, "KubeletCgroupDriverFromCRI")
            .iter()
            .any(|c| c.k8s == "1.34"));
    }

    #[test]
    fn history_passes_features_that_followed_the_rule() {
        let h = history(&data());
        // SupplementalGroupsPolicy: containerd 2.0.0 and CRI-O 1.31.0 predate beta 1.33 and GA 1.35.
        assert!(slips_of(&h, "SupplementalGroupsPolicy").is_empty());
        // ContainerStopSignals beta 1.37: containerd 2.3.0 and CRI-O 1.33.0 came before.
        assert!(slips_of(&h, "ContainerStopSignals").is_empty());
        // Split image filesystem: containerd never implemented it.
        let s = slips_of(&h, "KubeletSeparateDiskGC");
        assert!(s
            .iter()
            .any(|c| c.outcome == HistoryOutcome::Missing && c.runtime == Runtime::Containerd));
        // Windows features are judged against containerd alone; withdrawn ones not at all.
        assert!(h
            .iter()
            .filter(|c| c.kep == 1981)
            .all(|c| c.runtime == Runtime::Containerd));
        assert!(h.iter().all(|c| c.kep != 3503));
        // AppArmor beta 1.4 predates the date table: unknown, not a slip.
        assert!(h
            .iter()
            .any(|c| c.kep == 24 && c.k8s == "1.4" && c.outcome == HistoryOutcome::Unknown));
    }

    #[test]
    fn policy_from_facts_and_measurements() {
        let d = data();
        // Split image filesystem is beta (on) but containerd has no release: may claim alpha.
        let f = d.feature(4191).unwrap();
        let p = feature_policy(f, None);
        assert_eq!(p.stage, Stage::BetaOn);
        assert_eq!(p.may_claim, Stage::Alpha);
        assert!(p.rules_failed[0].contains("containerd"), "{p:?}");
        // Stop signals, both runtimes fine, measured works everywhere: the stage stands.
        let f = d.feature(4960).unwrap();
        let p = feature_policy(
            f,
            Some(&[("a".into(), Verdict::Works), ("b".into(), Verdict::Works)]),
        );
        assert_eq!(p.may_claim, Stage::Beta);
        assert!(p.ok(), "{p:?}");
        // One endpoint fails fast: beta cannot stand on the measurement.
        let p = feature_policy(
            f,
            Some(&[
                ("a".into(), Verdict::Works),
                ("b".into(), Verdict::FailsFast),
            ]),
        );
        assert_eq!(p.may_claim, Stage::Alpha);
        assert!(
            p.rules_failed.iter().any(|r| r.contains("not on b")),
            "{p:?}"
        );
        // Silently ignored is a violation at any stage, even alpha.
        let f = d.feature(2763).unwrap();
        let p = feature_policy(f, Some(&[("a".into(), Verdict::SilentlyIgnored)]));
        assert!(
            p.rules_failed.iter().any(|r| r.contains("never silently")),
            "{p:?}"
        );
        // An alpha feature that fails fast everywhere breaks no rule.
        let f = d.feature(5825).unwrap();
        let p = feature_policy(f, Some(&[("a".into(), Verdict::FailsFast)]));
        assert!(p.ok(), "{p:?}");
        assert_eq!(p.stage, Stage::Alpha);
    }

    #[test]
    fn evented_pleg_reverted_to_alpha() {
        let d = data();
        assert_eq!(current_stage(d.feature(3386).unwrap()), Stage::Alpha);
        assert_eq!(current_stage(d.feature(3503).unwrap()), Stage::None);
        assert!(minor_before("1.9", "1.30"));
    }
}
