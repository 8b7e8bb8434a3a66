//! Running every probe against every endpoint, bounded in time, removing what was made.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;
use serde::Serialize;

use crate::cleanup::{Ledger, Made};
use crate::client::{connect, Cri};
use crate::dataset::{Dataset, DatasetInfo};
use crate::policy::{self, FeaturePolicy, HistoryCheck, Stage};
use crate::probe::{self, Ctx, ProbeOptions, CHECKER_CRI_API};
use crate::verdict::{Outcome, Verdict};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub endpoints: Vec<String>,
    pub image: String,
    pub probe: ProbeOptions,
    /// Bound of one probe.
    pub per_probe: Duration,
    /// Bound of all probes of one endpoint (the "under 2 minutes per endpoint").
    pub budget: Duration,
    /// Only these KEPs (all when empty).
    pub only: Vec<u32>,
    /// Bound of one set-up call (Version, Status, RunPodSandbox of the base pod).
    pub call: Duration,
}

impl RunOptions {
    pub fn new(endpoints: Vec<String>, image: String) -> RunOptions {
        RunOptions {
            endpoints,
            image,
            probe: ProbeOptions::default(),
            per_probe: Duration::from_secs(25),
            budget: Duration::from_secs(110),
            only: Vec::new(),
            call: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureRow {
    pub kep: u32,
    pub feature: String,
    pub title: String,
    pub stage: Stage,
    pub platform: Option<String>,
    pub probe: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureResult {
    pub kep: u32,
    pub feature: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub millis: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RuntimeInfo {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
    /// Status conditions: (type, status, reason, message).
    pub conditions: Vec<Condition>,
    pub handlers: Vec<Handler>,
    pub supplemental_groups_policy: Option<bool>,
    pub user_namespaces_host_network: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    pub r#type: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Handler {
    pub name: String,
    pub recursive_read_only_mounts: bool,
    pub user_namespaces: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    /// Names what this run made: pods carry it in a label, host files live in
    /// `/tmp/crius-portability-<run_id>`.
    pub run_id: String,
    pub runtime: RuntimeInfo,
    pub results: Vec<FeatureResult>,
    pub seconds: f64,
    /// Why the endpoint could not be probed at all.
    pub error: Option<String>,
    pub cleanup_errors: Vec<String>,
}

impl EndpointReport {
    pub fn verdict(&self, kep: u32) -> Option<&FeatureResult> {
        self.results.iter().find(|r| r.kep == kep)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checker_cri_api: &'static str,
    pub dataset: DatasetInfo,
    pub policy_rule: String,
    pub image: String,
    pub features: Vec<FeatureRow>,
    pub endpoints: Vec<EndpointReport>,
    pub policy: Vec<FeaturePolicy>,
    pub history: Vec<HistoryCheck>,
}

/// Runs the probes; `progress` gets one line per step.
pub struct Runner {
    ledgers: Mutex<Vec<(String, Arc<Ledger>, String)>>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", std::process::id(), nanos & 0xffff)
}

impl Runner {
    pub fn new() -> Runner {
        Runner {
            ledgers: Mutex::new(Vec::new()),
        }
    }

    pub async fn run(
        &self,
        d: &Dataset,
        opts: &RunOptions,
        progress: &(dyn Fn(String) + Sync),
    ) -> Report {
        let mut endpoints = Vec::new();
        for ep in &opts.endpoints {
            endpoints.push(self.endpoint(d, opts, ep, progress).await);
        }
        report(d, opts, endpoints)
    }

    /// Removes everything every endpoint's probes made so far (Ctrl-C).
    pub async fn abort(&self) {
        let ledgers = self.ledgers.lock().map(|v| v.clone()).unwrap_or_default();
        for (ep, ledger, id) in ledgers {
            if let Ok(Ok(cri)) = tokio::time::timeout(Duration::from_secs(5), connect(&ep)).await {
                ledger.unwind_to(&cri, 0).await;
                ledger.sweep(&cri, &id).await;
            }
        }
    }

    async fn endpoint(
        &self,
        d: &Dataset,
        opts: &RunOptions,
        ep: &str,
        progress: &(dyn Fn(String) + Sync),
    ) -> EndpointReport {
        let t0 = Instant::now();
        let ledger = Arc::new(Ledger::new(opts.call));
        let id = run_id();
        if let Ok(mut v) = self.ledgers.lock() {
            v.push((ep.to_string(), ledger.clone(), id.clone()));
        }
        let mut rep = EndpointReport {
            endpoint: ep.to_string(),
            run_id: id.clone(),
            runtime: RuntimeInfo::default(),
            results: Vec::new(),
            seconds: 0.0,
            error: None,
            cleanup_errors: Vec::new(),
        };
        let cri = match tokio::time::timeout(Duration::from_secs(10), connect(ep)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return fail(rep, d, opts, e.to_string(), t0),
            Err(_) => {
                return fail(
                    rep,
                    d,
                    opts,
                    format!("connect to {ep}: no answer in 10s"),
                    t0,
                )
            }
        };
        match self
            .prepare(&cri, opts, &ledger, &id, &mut rep, progress)
            .await
        {
            Ok(ctx) => {
                self.probes(&ctx, d, opts, &mut rep, t0, progress).await;
                progress(format!("{ep}: removing what the probes made"));
            }
            Err(e) => {
                rep = fail(rep, d, opts, e, t0);
            }
        }
        ledger.unwind_to(&cri, 0).await;
        ledger.sweep(&cri, &id).await;
        rep.cleanup_errors = ledger.errors();
        rep.seconds = t0.elapsed().as_secs_f64();
        rep
    }

    async fn prepare(
        &self,
        cri: &Cri,
        opts: &RunOptions,
        ledger: &Arc<Ledger>,
        id: &str,
        rep: &mut EndpointReport,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Ctx, String> {
        let ep = &rep.endpoint.clone();
        let call = opts.call;
        let bounded = |what: &'static str| move |_| format!("{what}: no answer in {call:?}");
        let v = tokio::time::timeout(call, cri.rt.clone().version(cri::VersionRequest::default()))
            .await
            .map_err(bounded("Version"))?
            .map_err(|s| format!("Version: {}", s.message()))?
            .into_inner();
        let status = tokio::time::timeout(
            call,
            cri.rt.clone().status(cri::StatusRequest { verbose: false }),
        )
        .await
        .map_err(bounded("Status"))?
        .map_err(|s| format!("Status: {}", s.message()))?
        .into_inner();
        rep.runtime = runtime_info(&v, &status);
        progress(format!(
            "{ep}: {} {} (CRI {}); run {id}",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        ));
        let scratch = PathBuf::from(format!("/tmp/crius-portability-{id}"));
        ledger.record(Made::Dir(scratch.clone()));
        std::fs::create_dir_all(scratch.join("logs"))
            .map_err(|e| format!("mkdir {}: {e}", scratch.display()))?;
        let spec = cri::ImageSpec {
            image: opts.image.clone(),
            ..Default::default()
        };
        let present = matches!(
            tokio::time::timeout(call, cri.img.clone().image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            }))
            .await,
            Ok(Ok(r)) if r.get_ref().image.is_some()
        );
        progress(format!("{ep}: pulling {}", opts.image));
        let image_ref = tokio::time::timeout(
            Duration::from_secs(90),
            cri.img.clone().pull_image(cri::PullImageRequest {
                image: Some(spec),
                ..Default::default()
            }),
        )
        .await
        .map_err(bounded("PullImage"))?
        .map_err(|s| format!("PullImage {}: {}", opts.image, s.message()))?
        .into_inner()
        .image_ref;
        let mut ctx = Ctx::new(
            cri.clone(),
            opts.image.clone(),
            image_ref,
            status,
            scratch,
            ledger.clone(),
            id.to_string(),
            opts.probe.clone(),
            present,
        );
        // Baseline: can this endpoint make a pod-network pod at all (CNI configured)?
        let mark = ledger.mark();
        let cfg = ctx.pod_config("baseline", false);
        ctx.pod_network = match tokio::time::timeout(call, ctx.run_pod(&cfg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
            Err(_) => Err(format!("no answer in {call:?}")),
        };
        ledger.unwind_to(cri, mark).await;
        let cfg = ctx.pod_config("base", true);
        let base = tokio::time::timeout(call, ctx.run_pod(&cfg))
            .await
            .map_err(bounded("RunPodSandbox (host network)"))?
            .map_err(|s| {
                format!(
                    "RunPodSandbox (host network): {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
        ctx.base = Some((base, cfg));
        Ok(ctx)
    }

    async fn probes(
        &self,
        ctx: &Ctx,
        d: &Dataset,
        opts: &RunOptions,
        rep: &mut EndpointReport,
        t0: Instant,
        progress: &(dyn Fn(String) + Sync),
    ) {
        let features: Vec<_> = d
            .features
            .iter()
            .filter(|f| opts.only.is_empty() || opts.only.contains(&f.kep))
            .collect();
        let n = features.len();
        for (i, f) in features.into_iter().enumerate() {
            let name = f.name();
            let started = Instant::now();
            let left = opts.budget.saturating_sub(t0.elapsed());
            let outcome = if left.is_zero() {
                Outcome::new(
                    Verdict::Hang,
                    format!(
                        "not run: the endpoint's budget of {:?} is spent",
                        opts.budget
                    ),
                )
            } else {
                let mark = ctx.ledger.mark();
                ctx.step("start");
                let bound = opts.per_probe.min(left);
                let o = match tokio::time::timeout(bound, probe::run(f.kep, ctx)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::new(
                        Verdict::Hang,
                        format!(
                            "no result within {bound:?} (last step: {})",
                            ctx.last_step()
                        ),
                    ),
                };
                ctx.ledger.unwind_to(&ctx.cri, mark).await;
                o
            };
            let millis = started.elapsed().as_millis() as u64;
            progress(format!(
                "{}: [{:>2}/{n}] KEP-{:<5} {:<40} {} ({:.1}s)",
                rep.endpoint,
                i + 1,
                f.kep,
                name,
                outcome.verdict.label(),
                millis as f64 / 1000.0
            ));
            rep.results.push(FeatureResult {
                kep: f.kep,
                feature: name,
                outcome,
                millis,
            });
        }
        if !ctx.image_was_present {
            let _ = tokio::time::timeout(
                Duration::from_secs(15),
                ctx.cri.img.clone().remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: ctx.image.clone(),
                        ..Default::default()
                    }),
                }),
            )
            .await;
        }
    }
}

fn fail(
    mut rep: EndpointReport,
    d: &Dataset,
    opts: &RunOptions,
    e: String,
    t0: Instant,
) -> EndpointReport {
    rep.results = d
        .features
        .iter()
        .filter(|f| opts.only.is_empty() || opts.only.contains(&f.kep))
        .map(|f| FeatureResult {
            kep: f.kep,
            feature: f.name(),
            outcome: Outcome::inconclusive(format!("endpoint not probed: {e}")),
            millis: 0,
        })
        .collect();
    rep.error = Some(e);
    rep.seconds = t0.elapsed().as_secs_f64();
    rep
}

fn runtime_info(v: &cri::VersionResponse, s: &cri::StatusResponse) -> RuntimeInfo {
    RuntimeInfo {
        runtime_name: v.runtime_name.clone(),
        runtime_version: v.runtime_version.clone(),
        runtime_api_version: v.runtime_api_version.clone(),
        conditions: s
            .status
            .as_ref()
            .map(|st| {
                st.conditions
                    .iter()
                    .map(|c| Condition {
                        r#type: c.r#type.clone(),
                        status: c.status,
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        handlers: s
            .runtime_handlers
            .iter()
            .map(|h| Handler {
                name: h.name.clone(),
                recursive_read_only_mounts: h
                    .features
                    .map(|f| f.recursive_read_only_mounts)
                    .unwrap_or(false),
                user_namespaces: h.features.map(|f| f.user_namespaces).unwrap_or(false),
            })
            .collect(),
        supplemental_groups_policy: s.features.map(|f| f.supplemental_groups_policy),
        user_namespaces_host_network: s.features.map(|f| f.user_namespaces_host_network),
    }
}

/// The report: measurements plus the policy verdicts over them and over the release history.
pub fn report(d: &Dataset, opts: &RunOptions, endpoints: Vec<EndpointReport>) -> Report {
    let features: Vec<FeatureRow> = d
        .features
        .iter()
        .filter(|f| opts.only.is_empty() || opts.only.contains(&f.kep))
        .map(|f| FeatureRow {
            kep: f.kep,
            feature: f.name(),
            title: f.title.clone(),
            stage: policy::current_stage(f),
            platform: f.platform.clone(),
            probe: probe::PROBES
                .iter()
                .find(|p| p.0 == f.kep)
                .map(|p| p.1.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let policy = d
        .features
        .iter()
        .filter(|f| opts.only.is_empty() || opts.only.contains(&f.kep))
        .map(|f| {
            let measured: Vec<(String, Verdict)> = endpoints
                .iter()
                .filter(|e| e.error.is_none())
                .filter_map(|e| {
                    e.verdict(f.kep)
                        .map(|r| (e.endpoint.clone(), r.outcome.verdict))
                })
                .collect();
            policy::feature_policy(
                f,
                if measured.is_empty() {
                    None
                } else {
                    Some(&measured)
                },
            )
        })
        .collect();
    Report {
        checker_cri_api: CHECKER_CRI_API,
        dataset: d.meta.dataset.clone(),
        policy_rule: d.meta.policy_rule.text.clone(),
        image: opts.image.clone(),
        features,
        endpoints,
        policy,
        history: policy::history(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint that accepts connections and never answers is reported, within the bound.
    #[tokio::test]
    async fn a_silent_endpoint_is_bounded_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let sock = dir.join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let d = Dataset::embedded().unwrap();
        let mut opts = RunOptions::new(vec![format!("unix://{}", sock.display())], "img".into());
        opts.call = Duration::from_millis(500);
        let t0 = Instant::now();
        let r = Runner::new().run(&d, &opts, &|_| {}).await;
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let ep = &r.endpoints[0];
        let err = ep.error.clone().unwrap_or_default();
        assert!(err.contains("no answer"), "{err}");
        assert_eq!(ep.results.len(), d.features.len());
        assert!(ep
            .results
            .iter()
            .all(|x| x.outcome.verdict == Verdict::Inconclusive));
        // An endpoint that was not measured does not count for the policy.
        assert!(r.policy.iter().all(|p| p.measured_allows.is_none()));
        // A missing socket is an error too, at once.
        let mut opts = RunOptions::new(
            vec![format!("unix://{}/nope.sock", dir.display())],
            "img".into(),
        );
        opts.call = Duration::from_millis(500);
        let r = Runner::new().run(&d, &opts, &|_| {}).await;
        assert!(
            r.endpoints[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("connect"),
            "{:?}",
            r.endpoints[0].error
        );
        server.abort();
    }
}
