//! The CRI feature facts (`data/cri-features.yaml`): KEPs, their CRI surface, Kubernetes stages,
//! containerd/CRI-O releases and release dates. Parsing, and the consistency check behind
//! `crius portability check-dataset`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The copy kept in the repository, embedded so the checker needs nothing but a socket and an image.
pub const EMBEDDED: &str = include_str!("../../../data/cri-features.yaml");

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parse {origin}: {source}")]
    Parse {
        origin: String,
        source: serde_yaml::Error,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Dataset {
    pub meta: Meta,
    pub releases: Releases,
    pub features: Vec<Feature>,
    #[serde(default)]
    pub excluded: Vec<Excluded>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Meta {
    pub dataset: DatasetInfo,
    pub snapshots: BTreeMap<String, String>,
    pub policy_rule: PolicyRule,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatasetInfo {
    pub version: u32,
    /// The cri-api version the facts describe.
    pub cri_api: String,
    #[serde(default)]
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PolicyRule {
    pub text: String,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Releases {
    pub kubernetes: BTreeMap<String, K8sRelease>,
    pub containerd: BTreeMap<String, String>,
    pub crio: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct K8sRelease {
    pub date: String,
    #[serde(default)]
    pub verify: bool,
    #[serde(default)]
    pub scheduled: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Feature {
    pub kep: u32,
    pub title: String,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub new_cri_surface: Option<bool>,
    pub cri: Vec<String>,
    #[serde(default)]
    pub cri_since: BTreeMap<String, String>,
    pub k8s: K8s,
    pub containerd: RuntimeFacts,
    pub crio: RuntimeFacts,
    pub discovery: String,
    pub probe: String,
    pub policy_check: String,
    #[serde(default)]
    pub verify: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct K8s {
    pub feature_gate: Option<String>,
    pub alpha: Option<String>,
    pub beta: Option<String>,
    pub default_on_beta: Option<String>,
    pub ga: Option<String>,
    #[serde(default)]
    pub reverted_to_alpha: Option<String>,
    #[serde(default)]
    pub deprecated: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuntimeFacts {
    pub first_release: Option<String>,
    #[serde(default)]
    pub experimental: Option<bool>,
    pub supported_release: Option<String>,
    #[serde(default)]
    pub knob: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Excluded {
    pub kep: Option<u32>,
    pub title: String,
    pub reason: String,
}

/// The two participating runtimes of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    Crio,
}

impl Runtime {
    pub const ALL: [Runtime; 2] = [Runtime::Containerd, Runtime::Crio];
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Crio => "CRI-O",
        }
    }
}

impl Feature {
    /// The gate name, or `KEP-<n>` when the feature has none.
    pub fn name(&self) -> String {
        self.k8s
            .feature_gate
            .clone()
            .unwrap_or_else(|| format!("KEP-{}", self.kep))
    }

    pub fn runtime(&self, rt: Runtime) -> &RuntimeFacts {
        match rt {
            Runtime::Containerd => &self.containerd,
            Runtime::Crio => &self.crio,
        }
    }

    pub fn is_windows(&self) -> bool {
        self.platform.as_deref() == Some("windows")
    }

    /// The runtimes the two-runtime rule applies to (CRI-O is Linux-only).
    pub fn participants(&self) -> Vec<Runtime> {
        if self.is_windows() {
            vec![Runtime::Containerd]
        } else {
            Runtime::ALL.to_vec()
        }
    }

    /// The oldest cri-api version any part of the surface needs, as (0, minor); None when the facts
    /// name no tagged version (v1alpha2 carry-overs count as always present; master-only as unknown).
    pub fn cri_versions(&self) -> Vec<(String, Option<(u32, u32)>)> {
        self.cri_since
            .iter()
            .map(|(k, v)| (k.clone(), parse_cri_version(v)))
            .collect()
    }
}

/// `v0.25` → (0, 25); `1.20 (v1alpha2; carried into v1)` → (0, 20); master-only text → None.
pub fn parse_cri_version(v: &str) -> Option<(u32, u32)> {
    let t = v.trim();
    if let Some(rest) = t.strip_prefix('v') {
        return parse_minor(
            rest.split(|c: char| !c.is_ascii_digit() && c != '.')
                .next()?,
        );
    }
    let first = t.split_whitespace().next()?;
    let (maj, min) = parse_minor(first)?;
    // "1.20" style (Kubernetes version) → cri-api v0.20.
    if maj == 1 {
        Some((0, min))
    } else {
        None
    }
}

/// `1.30` or `1.30.0` → (1, 30).
pub fn parse_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim().trim_start_matches('v').split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || it.next().is_some() {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

impl Dataset {
    pub fn parse(text: &str, origin: &str) -> Result<Dataset, DatasetError> {
        serde_yaml::from_str(text).map_err(|source| DatasetError::Parse {
            origin: origin.to_string(),
            source,
        })
    }

    pub fn embedded() -> Result<Dataset, DatasetError> {
        Self::parse(EMBEDDED, "embedded data/cri-features.yaml")
    }

    pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn feature(&self, kep: u32) -> Option<&Feature> {
        self.features.iter().find(|f| f.kep == kep)
    }

    /// The release date (days since epoch) of a runtime release named like `2.0.0` or `v2.0.0`.
    pub fn runtime_date(&self, rt: Runtime, release: &str) -> Option<i64> {
        let key = format!("v{}", release.trim_start_matches('v'));
        let table = match rt {
            Runtime::Containerd => &self.releases.containerd,
            Runtime::Crio => &self.releases.crio,
        };
        table.get(&key).and_then(|d| parse_date(d))
    }

    pub fn k8s_release(&self, minor: &str) -> Option<&K8sRelease> {
        self.releases.kubernetes.get(minor)
    }

    /// Consistency problems; empty means the copy is sound. Facts the dataset itself marks as
    /// unverified are not problems.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        if self.meta.dataset.cri_api.is_empty() {
            problems.push("meta.dataset.cri_api is empty".into());
        }
        if parse_cri_version(&self.meta.dataset.cri_api).is_none() {
            problems.push(format!(
                "meta.dataset.cri_api {:?} is not a cri-api version",
                self.meta.dataset.cri_api
            ));
        }
        for (v, r) in &self.releases.kubernetes {
            if parse_minor(v).is_none() {
                problems.push(format!("releases.kubernetes: {v:?} is not a minor version"));
            }
            if parse_date(&r.date).is_none() {
                problems.push(format!("releases.kubernetes.{v}: bad date {:?}", r.date));
            }
        }
        for (name, table) in [
            ("containerd", &self.releases.containerd),
            ("crio", &self.releases.crio),
        ] {
            for (v, d) in table {
                if !v.starts_with('v') || parse_minor(v).is_none() {
                    problems.push(format!("releases.{name}: {v:?} is not a vX.Y.Z tag"));
                }
                if parse_date(d).is_none() {
                    problems.push(format!("releases.{name}.{v}: bad date {d:?}"));
                }
            }
        }
        for f in &self.features {
            let at = format!("KEP-{} ({})", f.kep, f.name());
            if !seen.insert(f.kep) {
                problems.push(format!("{at}: listed twice"));
            }
            if f.cri.is_empty() {
                problems.push(format!("{at}: no CRI surface"));
            }
            if f.probe.trim().is_empty() || f.discovery.trim().is_empty() {
                problems.push(format!("{at}: probe or discovery missing"));
            }
            // Stages must be versions and in order alpha <= beta <= default-on beta <= GA.
            let stages = [
                ("alpha", &f.k8s.alpha),
                ("beta", &f.k8s.beta),
                ("default_on_beta", &f.k8s.default_on_beta),
                ("ga", &f.k8s.ga),
            ];
            let mut last: Option<((u32, u32), &str)> = None;
            for (name, v) in stages {
                let Some(v) = v else { continue };
                let Some(p) = parse_minor(v) else {
                    problems.push(format!("{at}: k8s.{name} {v:?} is not a version"));
                    continue;
                };
                if let Some((lp, ln)) = last {
                    if p < lp {
                        problems.push(format!("{at}: k8s.{name} {v} comes before {ln}"));
                    }
                }
                last = Some((p, name));
                // Stages from beta on are checked against release dates: they need one (or to
                // predate the release table, like AppArmor's beta 1.4).
                if name != "alpha" && p >= (1, 20) && self.k8s_release(v).is_none() {
                    problems.push(format!(
                        "{at}: k8s.{name} {v} has no date in releases.kubernetes"
                    ));
                }
            }
            if f.k8s.default_on_beta.is_some() && f.k8s.beta.is_none() {
                problems.push(format!("{at}: default_on_beta without beta"));
            }
            for rt in Runtime::ALL {
                let r = f.runtime(rt);
                for (what, rel) in [
                    ("first_release", &r.first_release),
                    ("supported_release", &r.supported_release),
                ] {
                    if let Some(rel) = rel {
                        if self.runtime_date(rt, rel).is_none() {
                            problems.push(format!(
                                "{at}: {}.{what} {rel} has no date in releases",
                                rt.name()
                            ));
                        }
                    }
                }
                if let (Some(a), Some(b)) = (&r.first_release, &r.supported_release) {
                    if let (Some(da), Some(db)) =
                        (self.runtime_date(rt, a), self.runtime_date(rt, b))
                    {
                        if db < da {
                            problems.push(format!(
                                "{at}: {} supported_release {b} precedes first_release {a}",
                                rt.name()
                            ));
                        }
                    }
                }
                if r.supported_release.is_some() && r.first_release.is_none() {
                    problems.push(format!(
                        "{at}: {} has supported_release but no first_release",
                        rt.name()
                    ));
                }
            }
        }
        for e in &self.excluded {
            if let Some(k) = e.kep {
                if seen.contains(&k) {
                    problems.push(format!("KEP-{k} is both a feature and excluded"));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_copy_parses_and_is_consistent() {
        let d = Dataset::embedded().unwrap();
        assert_eq!(d.features.len(), 29);
        assert!(d.meta.dataset.version >= 1);
        let problems = d.check();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn check_finds_planted_inconsistencies() {
        let mut d = Dataset::embedded().unwrap();
        d.features[0].k8s.beta = Some("1.19".into()); // before its alpha 1.25
        d.features[1].containerd.supported_release = Some("9.9.9".into());
        let dup = d.features[2].clone();
        d.features.push(dup);
        let p = d.check();
        assert!(p.iter().any(|m| m.contains("comes before")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("9.9.9")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("listed twice")), "{p:?}");
    }

    #[test]
    fn dates_and_versions() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(
            parse_date("2024-11-05").unwrap() - parse_date("2024-08-13").unwrap(),
            84
        );
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_cri_version("v0.25"), Some((0, 25)));
        assert_eq!(
            parse_cri_version("1.20 (v1alpha2; carried into v1)"),
            Some((0, 20))
        );
        assert_eq!(
            parse_cri_version("master 2026-07-22 (after v0.37.0-beta.0; expected v0.37)"),
            None
        );
        assert_eq!(parse_cri_version("v0.37.0-beta.0+791729b"), Some((0, 37)));
    }
}
