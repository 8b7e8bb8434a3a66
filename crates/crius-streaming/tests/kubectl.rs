//! Interoperability with the real kubectl (client-go's WebSocket and SPDY implementations).
//!
//! kubectl only talks to an API server, so the test runs a minimal one: it serves the pod
//! object and, for `exec`/`attach`/`portforward` subresources, turns the query into a CRI-style
//! request, asks the streaming server for a URL (as the kubelet would via the CRI) and splices
//! the upgrade request through to it. Skipped when kubectl is not on PATH.

mod backend;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crius_streaming::{AttachRequest, Config, ExecRequest, PortForwardRequest, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const POD_JSON: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default","uid":"u1"},"spec":{"containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running"}}"#;

// Just enough discovery for kubectl to resolve `pods`.
const API_VERSIONS: &str =
    r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const API_V1: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Reads one request head (through the blank line) from `c`.
async fn read_head(c: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

type Seen = Arc<std::sync::Mutex<Vec<String>>>;

async fn fake_apiserver(streaming: Server, seen: Seen) -> SocketAddr {
    let l = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let streaming = streaming.clone();
            tokio::spawn(serve_client(c, streaming, seen.clone()));
        }
    });
    addr
}

async fn serve_client(mut c: TcpStream, streaming: Server, seen: Seen) {
    loop {
        let Some(head) = read_head(&mut c).await else {
            return;
        };
        let request_line = head.lines().next().unwrap_or_default().to_string();
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let q = query_pairs(query);
        let flag = |name: &str| {
            q.iter()
                .any(|(k, v)| k == name && (v == "true" || v == "1"))
        };
        let stream_url = if path.ends_with("/exec") {
            Some(
                streaming.exec_url(ExecRequest {
                    container_id: "c1".into(),
                    cmd: q
                        .iter()
                        .filter(|(k, _)| k == "command")
                        .map(|(_, v)| v.clone())
                        .collect(),
                    tty: flag("tty"),
                    stdin: flag("stdin"),
                    stdout: flag("stdout"),
                    stderr: flag("stderr"),
                }),
            )
        } else if path.ends_with("/attach") {
            Some(streaming.attach_url(AttachRequest {
                container_id: "c1".into(),
                tty: flag("tty"),
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
            }))
        } else if path.ends_with("/portforward") {
            Some(
                streaming.port_forward_url(PortForwardRequest {
                    pod_sandbox_id: "p1".into(),
                    ports: q
                        .iter()
                        .filter(|(k, _)| k == "ports")
                        .filter_map(|(_, v)| v.parse().ok())
                        .collect(),
                }),
            )
        } else {
            None
        };
        match stream_url {
            Some(url) => {
                let upgrade = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Upgrade: ")
                            .or_else(|| l.strip_prefix("upgrade: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(upgrade);
                // Splice: rewrite the request line to the streaming path, keep every header.
                let new_path = url.trim_start_matches(&streaming.base_url()).to_string();
                let method = request_line.split_whitespace().next().unwrap_or("GET");
                let rest = head.split_once("\r\n").map(|x| x.1).unwrap_or_default();
                let rewritten = format!("{method} {new_path} HTTP/1.1\r\n{rest}");
                let Ok(mut upstream) = TcpStream::connect(streaming.local_addr()).await else {
                    return;
                };
                if upstream.write_all(rewritten.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut c, &mut upstream).await;
                return;
            }
            None => {
                let (status, body) = if path == "/api/v1/namespaces/default/pods/p1" {
                    ("200 OK", POD_JSON.to_string())
                } else if path == "/api" {
                    ("200 OK", API_VERSIONS.to_string())
                } else if path == "/apis" {
                    ("200 OK", API_GROUPS.to_string())
                } else if path == "/api/v1" {
                    ("200 OK", API_V1.to_string())
                } else {
                    (
                        "404 Not Found",
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#
                            .to_string(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if c.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

struct Env {
    seen: Seen,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

async fn setup() -> (Server, Env) {
    let server = match Server::start(Config::default(), Arc::new(backend::LocalBackend)).await {
        Ok(s) => s,
        Err(e) => panic!("start: {e}"),
    };
    let seen = Seen::default();
    let api = fake_apiserver(server.clone(), seen.clone()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kubeconfig = dir.path().join("kubeconfig");
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{api}\n\
         users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: default\n\
         current-context: x\n"
    );
    std::fs::write(&kubeconfig, cfg).unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    (
        server,
        Env {
            seen,
            _dir: dir,
            kubeconfig,
        },
    )
}

async fn kubectl(
    env: &Env,
    websockets: bool,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, String, String) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .env(
            "KUBECTL_REMOTE_COMMAND_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn kubectl: {e}"));
    if let (Some(data), Some(mut si)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        tokio::spawn(async move {
            let _ = si.write_all(&data).await;
            let _ = si.shutdown().await;
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .unwrap_or_else(|e| panic!("kubectl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_exec_over_websocket_and_spdy() {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return;
    }
    let (_server, env) = setup().await;
    for websockets in [true, false] {
        let (code, out, err) = kubectl(
            &env,
            websockets,
            &[
                "exec",
                "p1",
                "-c",
                "c",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
            None,
        )
        .await;
        assert_eq!(out, "out\n", "websockets={websockets} stderr={err}");
        assert!(
            err.contains("err\n"),
            "websockets={websockets} stderr={err}"
        );
        assert_eq!(code, 7, "websockets={websockets} stderr={err}");

        let (code, out, err) = kubectl(
            &env,
            websockets,
            &["exec", "-i", "p1", "-c", "c", "--", "cat"],
            Some(b"from stdin\n"),
        )
        .await;
        assert_eq!(code, 0, "websockets={websockets} stderr={err}");
        assert_eq!(out, "from stdin\n", "websockets={websockets} stderr={err}");
        // Make sure the intended transport was used, not a fallback.
        let seen = std::mem::take(&mut *env.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let want = if websockets { "websocket" } else { "SPDY/3.1" };
        assert_eq!(seen, vec![want.to_string(); 2], "websockets={websockets}");
    }
}

#[tokio::test]
async fn kubectl_attach() {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return;
    }
    let (_server, env) = setup().await;
    for websockets in [true, false] {
        // The test backend's "container" echoes stdin back on stdout.
        let (code, out, err) = kubectl(
            &env,
            websockets,
            &["attach", "-i", "p1", "-c", "c"],
            Some(b"attached\n"),
        )
        .await;
        assert_eq!(code, 0, "websockets={websockets} stderr={err}");
        assert!(
            out.contains("attached\n"),
            "websockets={websockets} out={out:?} stderr={err}"
        );
        let seen = std::mem::take(&mut *env.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let want = if websockets { "websocket" } else { "SPDY/3.1" };
        assert_eq!(seen, vec![want.to_string()], "websockets={websockets}");
    }
}

/// `kubectl exec -t` only uses a terminal when its stdin is one: run it under script(1) to
/// exercise client-go's TTY path (resize stream included) against the real pty backend.
#[tokio::test]
async fn kubectl_exec_tty() {
    if !kubectl_available() || which("script").is_none() {
        eprintln!("kubectl or script not found; skipping");
        return;
    }
    let (_server, env) = setup().await;
    for websockets in [true, false] {
        let inner = format!(
            "stty cols 77 rows 22; kubectl --kubeconfig {} exec -ti p1 -c c -- sh -c 'stty size; tty'",
            env.kubeconfig.display()
        );
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            Command::new("script")
                .args(["-qec", &inner, "/dev/null"])
                .env(
                    "KUBECTL_REMOTE_COMMAND_WEBSOCKETS",
                    if websockets { "true" } else { "false" },
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl exec -t timed out"))
        .unwrap_or_else(|e| panic!("script: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        // The size kubectl read from its terminal reached the exec'd process's pty.
        assert!(text.contains("22 77"), "websockets={websockets}: {text:?}");
        assert!(
            text.contains("/dev/pts/"),
            "websockets={websockets}: {text:?}"
        );
        let seen = std::mem::take(&mut *env.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let want = if websockets { "websocket" } else { "SPDY/3.1" };
        assert_eq!(seen, vec![want.to_string()], "websockets={websockets}");
    }
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

#[tokio::test]
async fn kubectl_port_forward() {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return;
    }
    let (_server, env) = setup().await;
    // The "pod" service: echoes one line back, upper-cased.
    let svc = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let remote = svc.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = svc.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if let Ok(n) = c.read(&mut buf).await {
                    let _ = c.write_all(&buf[..n].to_ascii_uppercase()).await;
                }
            });
        }
    });
    for websockets in ["false", "true"] {
        let local = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().map(|a| a.port()).unwrap_or(0)
        };
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["port-forward", "--address", "127.0.0.1", "pod/p1"])
            .arg(format!("{local}:{remote}"))
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kubectl: {e}"));
        // Wait for the local listener.
        let mut conn = None;
        for _ in 0..100 {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", local)).await {
                conn = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(mut c) = conn else {
            let _ = child.kill().await;
            let out = child.wait_with_output().await.ok();
            panic!(
                "kubectl port-forward never listened (websockets={websockets}): {:?}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
        };
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            c.write_all(b"hello pod").await.ok()?;
            let mut buf = vec![0u8; 64];
            let n = c.read(&mut buf).await.ok()?;
            Some(buf[..n].to_vec())
        })
        .await
        .ok()
        .flatten();
        // Many concurrent connections through the same kubectl session.
        let mut tasks = Vec::new();
        for i in 0..16u32 {
            tasks.push(tokio::spawn(async move {
                let mut c = TcpStream::connect(("127.0.0.1", local)).await.ok()?;
                let msg = format!("conn {i}");
                c.write_all(msg.as_bytes()).await.ok()?;
                let mut buf = vec![0u8; 64];
                let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                (buf[..n] == *msg.to_ascii_uppercase().as_bytes()).then_some(())
            }));
        }
        let mut good = 0;
        for t in tasks {
            if matches!(t.await, Ok(Some(()))) {
                good += 1;
            }
        }
        let _ = child.kill().await;
        let stderr = match child.wait_with_output().await {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(_) => String::new(),
        };
        assert_eq!(
            got.as_deref(),
            Some(&b"HELLO POD"[..]),
            "websockets={websockets} kubectl stderr: {stderr}"
        );
        assert_eq!(good, 16, "websockets={websockets} kubectl stderr: {stderr}");
        // With websockets kubectl tunnels SPDY inside WebSocket (`SPDY/3.1+portforward.k8s.io`)
        // and must not have fallen back to plain SPDY; without, plain SPDY.
        let seen = std::mem::take(&mut *env.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let want = if websockets == "true" {
            "websocket"
        } else {
            "SPDY/3.1"
        };
        assert_eq!(seen, vec![want.to_string()], "websockets={websockets}");
        eprintln!("port-forward websockets={websockets}: upgrades attempted {seen:?}");
    }
}
