//! Renderers: the terminal table and the self-contained HTML matrix (JSON is the report serialized).

use std::fmt::Write;

use crate::run::Report;
use crate::verdict::Verdict;

fn column_names(r: &Report) -> Vec<String> {
    r.endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = &e.runtime.runtime_name;
            let unique = !name.is_empty()
                && r.endpoints
                    .iter()
                    .filter(|o| &o.runtime.runtime_name == name)
                    .count()
                    == 1;
            if unique {
                name.clone()
            } else {
                format!("ep{}", i + 1)
            }
        })
        .collect()
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn policy_cell(p: &crate::policy::FeaturePolicy) -> String {
    if p.ok() {
        format!("ok ({})", p.stage.label())
    } else {
        format!("{} > may claim {}", p.stage.label(), p.may_claim.label())
    }
}

/// The terminal report.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let cols = column_names(r);
    let w = cols.iter().map(|c| c.len()).max().unwrap_or(0).max(12);
    let _ = writeln!(
        out,
        "CRI portability matrix (checker speaks cri-api {}; dataset v{} describes {})",
        r.checker_cri_api, r.dataset.version, r.dataset.cri_api
    );
    for (c, e) in cols.iter().zip(&r.endpoints) {
        let _ = writeln!(
            out,
            "  {c} = {} ({} {}, CRI {}, {:.1}s){}",
            e.endpoint,
            e.runtime.runtime_name,
            e.runtime.runtime_version,
            e.runtime.runtime_api_version,
            e.seconds,
            e.error
                .as_ref()
                .map(|x| format!(" NOT PROBED: {x}"))
                .unwrap_or_default()
        );
    }
    let _ = write!(out, "\n{:<42} {:>5} {:<10}", "FEATURE", "KEP", "K8S");
    for c in &cols {
        let _ = write!(out, " {c:<w$}");
    }
    let _ = writeln!(out, " POLICY");
    for f in &r.features {
        let _ = write!(
            out,
            "{:<42} {:>5} {:<10}",
            f.feature,
            f.kep,
            f.stage.label()
        );
        for e in &r.endpoints {
            let v = e
                .verdict(f.kep)
                .map(|x| x.outcome.verdict.short())
                .unwrap_or("-");
            let _ = write!(out, " {v:<w$}");
        }
        let p = r.policy.iter().find(|p| p.kep == f.kep);
        let _ = writeln!(out, " {}", p.map(policy_cell).unwrap_or_default());
    }
    let _ = writeln!(out, "\nEvidence:");
    for (c, e) in cols.iter().zip(&r.endpoints) {
        for x in &e.results {
            let _ = writeln!(
                out,
                "  {c} KEP-{:<5} {:<22} {}",
                x.kep,
                x.outcome.verdict.label(),
                one_line(&x.outcome.evidence, 200)
            );
        }
        for ce in &e.cleanup_errors {
            let _ = writeln!(out, "  {c} CLEANUP FAILED: {ce}");
        }
    }
    let failing: Vec<_> = r.policy.iter().filter(|p| !p.ok()).collect();
    if !failing.is_empty() {
        let _ = writeln!(out, "\nPolicy rules that fail:");
        for p in failing {
            for rule in &p.rules_failed {
                let _ = writeln!(out, "  {} (KEP-{}): {rule}", p.feature, p.kep);
            }
        }
    }
    let _ = writeln!(out, "\nRelease history against the policy (slips):");
    for h in r.history.iter().filter(|h| h.is_slip()) {
        let _ = writeln!(out, "  {}", h.describe());
    }
    out
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Works => "v-works",
        Verdict::FailsFast => "v-fails-fast",
        Verdict::AdvertisedButBroken => "v-broken",
        Verdict::SilentlyIgnored => "v-ignored",
        Verdict::NotInCriVersion => "v-not-in-cri",
        Verdict::Hang => "v-hang",
        Verdict::Inconclusive => "v-inconclusive",
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}\
th{background:#eee}td.v{text-align:center;cursor:help;white-space:nowrap}\
.v-works{background:#9be29b}.v-fails-fast{background:#cfe3f7}.v-broken{background:#f2a35e}\
.v-ignored{background:#e8595b;color:#fff}.v-not-in-cri{background:#ddd}.v-hang{background:#8b1a1a;color:#fff}\
.v-inconclusive{background:#fff6b0}.p-ok{background:#e7f6e7}.p-fail{background:#fbe3e3;cursor:help}\
.small{font-size:.85em;color:#555}";

/// The self-contained HTML matrix: runtime × feature, colour per verdict, evidence on hover.
pub fn html(r: &Report) -> String {
    let cols = column_names(r);
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>CRI portability matrix</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    let _ = writeln!(
        o,
        "<h1>CRI portability matrix</h1>\n<p class=\"small\">Checker speaks cri-api {}; dataset v{} describes cri-api {}; image {}. Hover a cell for the evidence.</p>",
        escape(r.checker_cri_api),
        r.dataset.version,
        escape(&r.dataset.cri_api),
        escape(&r.image)
    );
    let _ = writeln!(o, "<table class=\"matrix\">\n<thead><tr><th>KEP</th><th>Feature</th><th>Kubernetes stage</th>");
    for (c, e) in cols.iter().zip(&r.endpoints) {
        let _ = write!(
            o,
            "<th title=\"{}\">{}</th>",
            escape(&format!(
                "{} — {} {} (CRI {}), {:.1}s",
                e.endpoint,
                e.runtime.runtime_name,
                e.runtime.runtime_version,
                e.runtime.runtime_api_version,
                e.seconds
            )),
            escape(c)
        );
    }
    let _ = writeln!(o, "<th>Policy</th></tr></thead>\n<tbody>");
    for f in &r.features {
        let _ = write!(
            o,
            "<tr><td>{}</td><td title=\"{}\">{}</td><td>{}</td>",
            f.kep,
            escape(&format!("{} — probe: {}", f.title, f.probe)),
            escape(&f.feature),
            escape(f.stage.label())
        );
        for e in &r.endpoints {
            match e.verdict(f.kep) {
                Some(x) => {
                    let _ = write!(
                        o,
                        "<td class=\"v {}\" title=\"{}\">{}</td>",
                        class(x.outcome.verdict),
                        escape(&format!("{} ({} ms)", x.outcome.evidence, x.millis)),
                        escape(x.outcome.verdict.label())
                    );
                }
                None => o.push_str("<td>-</td>"),
            }
        }
        match r.policy.iter().find(|p| p.kep == f.kep) {
            Some(p) if p.ok() => {
                let _ = write!(o, "<td class=\"p-ok\">{}</td>", escape(&policy_cell(p)));
            }
            Some(p) => {
                let _ = write!(
                    o,
                    "<td class=\"p-fail\" title=\"{}\">{}</td>",
                    escape(&p.rules_failed.join("\n")),
                    escape(&policy_cell(p))
                );
            }
            None => o.push_str("<td>-</td>"),
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n<table class=\"legend\"><tr>");
    for v in Verdict::ALL {
        let _ = write!(o, "<td class=\"v {}\">{}</td>", class(v), escape(v.label()));
    }
    o.push_str("</tr></table>\n<h2>What the runtimes advertise</h2>\n<table><thead><tr><th>Endpoint</th><th>Status conditions</th><th>Handlers (rro, userns)</th><th>Runtime features</th></tr></thead>\n<tbody>\n");
    for (c, e) in cols.iter().zip(&r.endpoints) {
        let conds: Vec<String> = e
            .runtime
            .conditions
            .iter()
            .map(|x| {
                format!(
                    "{}={}{}",
                    x.r#type,
                    x.status,
                    if x.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", x.reason)
                    }
                )
            })
            .collect();
        let hs: Vec<String> = e
            .runtime
            .handlers
            .iter()
            .map(|h| {
                format!(
                    "{:?}: rro={} userns={}",
                    h.name, h.recursive_read_only_mounts, h.user_namespaces
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>supplemental_groups_policy={:?} user_namespaces_host_network={:?}</td></tr>",
            escape(&e.endpoint),
            escape(c),
            escape(&conds.join(", ")),
            escape(&hs.join("; ")),
            e.runtime.supplemental_groups_policy,
            e.runtime.user_namespaces_host_network
        );
    }
    o.push_str("</tbody>\n</table>\n<h2>Release history against the policy</h2>\n");
    let _ = writeln!(o, "<p class=\"small\">{}</p>", escape(&r.policy_rule));
    o.push_str("<table><thead><tr><th>Feature</th><th>Stage</th><th>Kubernetes</th><th>Runtime</th><th>Supported release</th><th>Result</th></tr></thead>\n<tbody>\n");
    for h in &r.history {
        let result = match &h.outcome {
            crate::policy::HistoryOutcome::Ok => "ok".to_string(),
            crate::policy::HistoryOutcome::Late { days } => format!("late by {days} days"),
            crate::policy::HistoryOutcome::Missing => "no release".to_string(),
            crate::policy::HistoryOutcome::Unknown => "no date to compare".to_string(),
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{} {}</td><td class=\"{}\">{}</td></tr>",
            escape(&h.feature),
            escape(h.stage.label()),
            escape(&h.k8s),
            escape(h.k8s_date.as_deref().unwrap_or("")),
            escape(h.runtime.name()),
            escape(h.release.as_deref().unwrap_or("-")),
            escape(h.release_date.as_deref().unwrap_or("")),
            if h.is_slip() { "p-fail" } else { "p-ok" },
            escape(&result)
        );
    }
    o.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::run::{report, EndpointReport, FeatureResult, RunOptions, RuntimeInfo};
    use crate::verdict::Outcome;

    #[test]
    fn html_escapes_and_colours() {
        let d = Dataset::embedded().unwrap();
        let mut opts = RunOptions::new(vec!["unix:///x".into()], "img".into());
        opts.only = vec![127, 3857];
        let ep = EndpointReport {
            endpoint: "unix:///x".into(),
            run_id: "r".into(),
            runtime: RuntimeInfo {
                runtime_name: "rt<1>".into(),
                ..Default::default()
            },
            results: vec![
                FeatureResult {
                    kep: 127,
                    feature: "UserNamespacesSupport".into(),
                    outcome: Outcome::new(
                        Verdict::SilentlyIgnored,
                        "uid_map \"0 0 4294967295\" <bad>",
                    ),
                    millis: 5,
                },
                FeatureResult {
                    kep: 3857,
                    feature: "RecursiveReadOnlyMounts".into(),
                    outcome: Outcome::works("ok"),
                    millis: 5,
                },
            ],
            seconds: 1.0,
            error: None,
            cleanup_errors: vec![],
        };
        let r = report(&d, &opts, vec![ep]);
        let h = html(&r);
        assert!(h.contains("class=\"v v-ignored\" title=\"uid_map &quot;0 0 4294967295&quot; &lt;bad&gt; (5 ms)\""), "{h}");
        assert!(h.contains("rt&lt;1&gt;"));
        assert!(!h.contains("<bad>"));
        let t = table(&r);
        assert!(t.contains("IGNORED") && t.contains("works"), "{t}");
        assert!(t.contains("never silently"), "{t}");
    }
}
