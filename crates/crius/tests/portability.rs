//! E2E: `crius portability` against a real crius daemon. The measured matrix must equal crius's own
//! feature table as it stands when the test runs: every row the table turns on works, every row it
//! leaves off fails fast (or is beyond the checker's CRI). A table that over- or under-claims fails
//! here. Also: the HTML report is produced and well-formed, the dataset check passes and catches a
//! broken copy, and Ctrl-C leaves nothing behind.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use crius::features::{Maturity, FEATURES};

fn crius() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crius"))
}

/// Every alpha gate on, so alpha implementations are measured too.
fn all_alpha_on() -> BTreeMap<String, bool> {
    FEATURES
        .iter()
        .filter(|f| f.maturity == Maturity::Alpha)
        .map(|f| (f.name.to_string(), true))
        .collect()
}

fn gates_toml(g: &BTreeMap<String, bool>) -> String {
    let mut s = String::from("[feature_gates]\n");
    for (k, v) in g {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// A small well-formedness check: tags balance (void elements aside), attributes are quoted, and
/// text holds no raw `<` or bare `&`.
fn check_html(h: &str) -> Result<usize, String> {
    const VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = h;
    let mut tags = 0;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        check_text(text)?;
        let Some(j) = rest[i..].find('>') else {
            return Err("unterminated tag".into());
        };
        let tag = &rest[i + 1..i + j];
        rest = &rest[i + j + 1..];
        tags += 1;
        if tag.starts_with('!') {
            continue;
        }
        if !tag.matches('"').count().is_multiple_of(2) || tag.contains('<') {
            return Err(format!("bad attribute quoting in <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            if name == "style" {
                let end = rest.find("</style>").ok_or("unclosed <style>")?;
                rest = &rest[end + "</style>".len()..];
                continue;
            }
            if !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    Ok(tags)
}

fn check_text(t: &str) -> Result<(), String> {
    for (i, _) in t.match_indices('&') {
        let ent = &t[i..t.len().min(i + 8)];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
            .iter()
            .any(|e| ent.starts_with(e))
        {
            return Err(format!("bare & in text near {ent:?}"));
        }
    }
    Ok(())
}

#[test]
fn html_checker_rejects_broken_markup() {
    assert!(check_html("<html><body><p>a &amp; b</p></body></html>").is_ok());
    assert!(check_html("<html><body><p>a</body></html>").is_err());
    assert!(check_html("<td title=\"x>y</td>").is_err());
    assert!(check_html("<p>a & b</p>").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_equals_the_feature_table() {
    let overrides = all_alpha_on();
    // A second name for runc, so the per-handler image pull probe (KEP-4216) has two handlers to
    // compare whatever other runtimes this host has.
    let runc = std::env::var("CRIUS_TEST_RUNC").unwrap_or_else(|_| "runc".into());
    let mut d = Daemon::start_with(Options {
        extra_config: format!(
            "{}\n[runtimes.portability-second]\npath = \"{runc}\"\n",
            gates_toml(&overrides)
        ),
        ..Default::default()
    })
    .await;
    let html = d.dir.join("matrix.html");
    let endpoint = format!("unix://{}", d.socket.display());
    let args: Vec<String> = vec![
        "portability".into(),
        "--endpoint".into(),
        endpoint.clone(),
        "--image".into(),
        image("busybox:latest"),
        "--cgroup-parent".into(),
        "/crius-e2e".into(),
        "--json".into(),
        "--html".into(),
        html.display().to_string(),
    ];
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || crius().args(&args).output())
        .await
        .unwrap()
        .expect("run crius portability");
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "crius portability failed: {stderr}\n{}",
        d.log()
    );
    assert!(
        took < Duration::from_secs(120),
        "took {took:?} (> 2 minutes)"
    );
    // Progress was shown while the probes ran.
    assert!(stderr.contains("[ 1/"), "no progress lines: {stderr}");

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let ep = &report["endpoints"][0];
    assert_eq!(ep["endpoint"], endpoint.as_str());
    assert!(ep["error"].is_null(), "{}", ep["error"]);
    assert_eq!(
        ep["cleanup_errors"].as_array().map(Vec::len),
        Some(0),
        "{}",
        ep["cleanup_errors"]
    );
    let results = ep["results"].as_array().expect("results");
    let by_kep: BTreeMap<u64, &serde_json::Value> = results
        .iter()
        .map(|r| (r["kep"].as_u64().unwrap(), r))
        .collect();

    // The table as this daemon reports it (verbose Status, key "features"): its gates and whatever
    // it found on this host decide what must work.
    let status =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
    // Key "features" holds a list; newer crius names it "criusFeatures", an object by feature name.
    let table: Vec<serde_json::Value> = match status.info.get("criusFeatures") {
        Some(t) => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t)
            .expect("criusFeatures JSON in verbose Status")
            .into_iter()
            .map(|(_, v)| v)
            .collect(),
        None => {
            serde_json::from_str(&status.info["features"]).expect("features JSON in verbose Status")
        }
    };
    assert_eq!(table.len(), FEATURES.len());
    // The table covers every KEP the checker measures, and the other way round.
    for k in by_kep.keys() {
        assert!(
            table.iter().any(|f| f["kep"].as_u64() == Some(*k)),
            "the dataset's KEP-{k} has no row in crius's feature table"
        );
    }
    let mut mismatches = Vec::new();
    let mut matrix = String::new();
    for f in &table {
        let (name, kep) = (
            f["name"].as_str().unwrap_or(""),
            f["kep"].as_u64().unwrap_or(0),
        );
        let maturity = f["maturity"].as_str().unwrap_or("");
        let on = f["enabled"].as_bool().expect("enabled");
        let r = by_kep
            .get(&kep)
            .unwrap_or_else(|| panic!("no measurement for {name} (KEP-{kep})"));
        let verdict = r["verdict"].as_str().unwrap_or("");
        let ok = if on {
            verdict == "works"
        } else {
            verdict == "fails_fast" || verdict == "not_in_cri_version"
        };
        matrix.push_str(&format!(
            "{name:<42} {kep:>5} {maturity:<12} {on:<7} {verdict}\n"
        ));
        if !ok {
            mismatches.push(format!(
                "{name} (KEP-{kep}): the table says {maturity}{}, the checker measured {verdict}: {}",
                if on { " (on)" } else { " (off)" },
                r["evidence"]
            ));
        }
    }
    // The HTML matrix: self-contained, well-formed, one coloured cell per feature with evidence.
    let h = std::fs::read_to_string(&html).expect("HTML report written");
    check_html(&h).unwrap_or_else(|e| panic!("HTML not well-formed: {e}"));
    assert!(h.starts_with("<!DOCTYPE html>"));
    assert!(
        !h.contains("<script") && !h.contains("src=") && !h.contains("href="),
        "not self-contained"
    );
    let cells = h.matches("<td class=\"v v-").count();
    assert_eq!(
        cells,
        results.len() + 7,
        "a verdict cell per feature plus the legend"
    );
    for k in by_kep.keys() {
        assert!(
            h.contains(&format!("<tr><td>{k}</td>")),
            "KEP-{k} missing from the HTML"
        );
    }

    // Nothing left behind: no pods, no containers, no host mounts or scratch dirs.
    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.is_empty(), "pods left: {pods:?}");
    let ctrs =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(ctrs.is_empty(), "containers left: {ctrs:?}");
    let scratch = format!("/tmp/crius-portability-{}", ep["run_id"].as_str().unwrap());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&scratch), "mount left behind");
    assert!(
        !std::path::Path::new(&scratch).exists(),
        "{scratch} left behind"
    );
    eprintln!("crius matrix:\n{matrix}");
    assert!(
        mismatches.is_empty(),
        "crius's feature table over- or under-claims:\n{}",
        mismatches.join("\n")
    );

    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_removes_what_the_probes_made() {
    let mut d = Daemon::start_with(Options {
        extra_config: gates_toml(&all_alpha_on()),
        ..Default::default()
    })
    .await;
    let endpoint = format!("unix://{}", d.socket.display());
    let img = image("busybox:latest");
    let (code, seen) = tokio::task::spawn_blocking(move || {
        let mut child = crius()
            .args(["portability", "--endpoint", &endpoint, "--image", &img])
            .args(["--cgroup-parent", "/crius-e2e"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crius portability");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        // Interrupt while the RRO probe (a host mount and a container) has just finished and the
        // supplemental groups probe (three containers) runs.
        for l in lines.by_ref() {
            let l = l.unwrap();
            seen.push_str(&l);
            seen.push('\n');
            if l.contains("[ 2/") {
                std::thread::sleep(Duration::from_millis(400));
                // SAFETY: plain kill(2) on the child we spawned.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                break;
            }
        }
        for l in lines {
            seen.push_str(&l.unwrap_or_default());
            seen.push('\n');
        }
        (child.wait().unwrap().code(), seen)
    })
    .await
    .unwrap();
    assert_ne!(
        code,
        Some(0),
        "an interrupted run must not claim success: {seen}"
    );
    assert!(seen.contains("interrupted"), "{seen}");
    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.is_empty(), "pods left after Ctrl-C: {pods:?}\n{seen}");
    let run = seen
        .split("; run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in the progress: {seen}"));
    let scratch = format!("/tmp/crius-portability-{run}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&scratch),
        "mount left behind after Ctrl-C"
    );
    assert!(
        !std::path::Path::new(&scratch).exists(),
        "{scratch} left behind after Ctrl-C"
    );
    d.shutdown().await;
}

#[test]
fn dataset_check_passes_and_catches_a_broken_copy() {
    let out = crius()
        .args(["portability", "check-dataset"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok") && text.contains("29 features"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let good = crius_portability::dataset::EMBEDDED;
    // A stage out of order.
    let bad = good.replacen("    beta: \"1.30\"\n", "    beta: \"1.19\"\n", 1);
    assert_ne!(bad, good);
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, bad).unwrap();
    let out = crius()
        .args(["portability", "check-dataset"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("comes before"), "{err}");
    // Not YAML at all.
    std::fs::write(&p, "features: [").unwrap();
    let out = crius()
        .args(["portability", "check-dataset"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parse"));
}

#[test]
fn history_only_without_endpoints() {
    let out = crius().args(["portability", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slips: Vec<String> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["outcome"]["kind"] != "ok" && h["outcome"]["kind"] != "unknown")
        .map(|h| format!("{} {} {}", h["feature"], h["k8s"], h["runtime"]))
        .collect();
    for want in [
        "\"ContainerCheckpoint\" \"1.30\" \"containerd\"",
        "\"RecursiveReadOnlyMounts\" \"1.31\" \"containerd\"",
        "\"KubeletCgroupDriverFromCRI\" \"1.31\" \"containerd\"",
        "\"ImageVolume\" \"1.33\" \"containerd\"",
    ] {
        assert!(
            slips.iter().any(|s| s == want),
            "{want} not flagged: {slips:#?}"
        );
    }
}
