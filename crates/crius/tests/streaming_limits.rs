//! Streaming server limits against the real daemon: hostile clients (1,000 streams on one
//! connection, bulk data pushed at a pod or process that never reads it) leave the daemon's
//! memory bounded and other clients served; idle sessions are closed; the session cap holds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use crius_streaming::client::{spdy, ws, ClientError, ExecIo};

/// What hostile clients may add to the daemon's resident memory (issue 9).
const RSS_ALLOWANCE_KIB: u64 = 64 * 1024;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

async fn port_forward_url(d: &mut Daemon, pod: &str) -> String {
    d.rt.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port: vec![],
    })
    .await
    .unwrap_or_else(|e| panic!("PortForward {pod}: {e}"))
    .into_inner()
    .url
}

async fn exec_url(d: &mut Daemon, ctr: &str, cmd: &[&str], stdin: bool) -> String {
    d.rt.exec(cri::ExecRequest {
        container_id: ctr.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin,
        stdout: true,
        stderr: false,
    })
    .await
    .unwrap_or_else(|e| panic!("Exec {ctr}: {e}"))
    .into_inner()
    .url
}

/// httpd on 8080, and on 9002 a server that accepts and never reads.
const SERVERS: &str = "mkdir -p /www && echo hello-from-pod > /www/index.html \
    && (nc -ll -p 9002 -e sleep 100000 &) && exec httpd -f -p 8080 -h /www";

async fn daemon_with_servers(extra_config: &str) -> (Daemon, String, String) {
    let mut d = Daemon::start_with(Options {
        extra_config: extra_config.to_string(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("limits", false).await;
    let ctr = d
        .run(&pod, &pod_cfg, "servers", &["sh", "-c", SERVERS])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = d
            .exec(
                &ctr,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
                10,
            )
            .await;
        if matches!(&r, Ok(r) if r.exit_code == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "httpd not up: {r:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (d, pod, ctr)
}

/// A GET through a fresh port-forward session and an exec through a fresh WebSocket session,
/// both bounded in time: what "other clients are served" means.
async fn others_are_served(d: &mut Daemon, pod: &str, ctr: &str, when: &str) {
    let url = port_forward_url(d, pod).await;
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let c = spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await?;
        spdy::port_forward_once(&c, 8080, 0, b"GET / HTTP/1.0\r\n\r\n").await
    })
    .await;
    match got {
        Ok(Ok(body)) => assert!(
            String::from_utf8_lossy(&body).ends_with("hello-from-pod\n"),
            "{when}: {}",
            String::from_utf8_lossy(&body)
        ),
        other => panic!("{when}: port-forward not served: {other:?}\n{}", d.log()),
    }
    let url = exec_url(d, ctr, &["echo", "served"], false).await;
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        ws::exec(
            &url,
            &[crius_streaming::ws::V5_BINARY],
            ExecIo {
                stdout: true,
                ..Default::default()
            },
        ),
    )
    .await;
    match out {
        Ok(Ok(o)) => assert_eq!(o.stdout, b"served\n", "{when}"),
        other => panic!("{when}: exec not served: {other:?}\n{}", d.log()),
    }
}

/// How long a push may make no progress before it counts as stalled.
const STALL: Duration = Duration::from_secs(3);
/// What a hostile client tries to push.
const PUSH_TOTAL: usize = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_leave_memory_bounded_and_others_served() {
    let (mut d, pod, ctr) = daemon_with_servers("").await;
    // Warm up every path once so lazily allocated state is in the baseline.
    others_are_served(&mut d, &pod, &ctr, "warm-up").await;
    let base = rss_kib(d.pid());

    // 1. One SPDY connection opening 1,000 streams (none of them closed): the server accepts
    //    what it advertised and refuses the rest.
    let url = port_forward_url(&mut d, &pod).await;
    let hog = spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false)
        .await
        .unwrap();
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..1000u32 {
        let port = (9000 + i % 10).to_string();
        let rid = i.to_string();
        match hog
            .open(&[
                ("streamType", "error"),
                ("port", &port),
                ("requestID", &rid),
            ])
            .await
        {
            Ok(s) => open.push(s),
            Err(ClientError::Protocol(m)) if m.contains("was reset") => refused += 1,
            Err(e) => panic!("stream {i}: {e}"),
        }
    }
    assert_eq!(
        open.len(),
        crius_streaming::spdy::MAX_STREAMS,
        "accepted streams ({refused} refused)"
    );
    others_are_served(&mut d, &pod, &ctr, "with 1,000 streams open").await;

    // 2. Port forward into a pod server that never reads: four connections on one session,
    //    1 GiB pushed in 1 MiB frames (the largest SPDY frame accepted) without reading.
    let url = port_forward_url(&mut d, &pod).await;
    let pusher = spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false)
        .await
        .unwrap();
    let mut pairs = Vec::new();
    for rid in 1..=4 {
        pairs.push(pusher.port_forward_streams(9002, rid).await.unwrap());
    }
    let chunk = vec![b'x'; 1 << 20];
    let spdy_sent = futures::future::join_all(pairs.iter().map(|(data, _)| {
        let chunk = &chunk;
        async move {
            let mut sent = 0;
            while sent < PUSH_TOTAL / 4 {
                match tokio::time::timeout(STALL, data.write_frame(chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => break,
                }
            }
            sent
        }
    }))
    .await
    .into_iter()
    .sum::<usize>();
    assert!(
        spdy_sent < 256 << 20,
        "SPDY: {} MiB taken from a client whose pod never reads",
        spdy_sent >> 20
    );

    // 3. The same over WebSocket: stdin of a process that never reads it, in 2 MiB messages
    //    (the largest accepted).
    let url = exec_url(&mut d, &ctr, &["sleep", "100000"], true).await;
    let mut wsc = ws::WsClient::connect(&url, &[crius_streaming::ws::V5_BINARY])
        .await
        .unwrap();
    let ws_chunk = vec![b'y'; crius_streaming::ws::frame::MAX_MESSAGE - 1];
    let mut ws_sent = 0;
    while ws_sent < PUSH_TOTAL {
        match tokio::time::timeout(STALL, wsc.tx.send(0, &ws_chunk)).await {
            Ok(Ok(())) => ws_sent += ws_chunk.len(),
            _ => break,
        }
    }
    assert!(
        ws_sent < 256 << 20,
        "WebSocket: {} MiB taken from a client whose process never reads",
        ws_sent >> 20
    );

    others_are_served(&mut d, &pod, &ctr, "with stalled pushers").await;
    let grown = rss_kib(d.pid()).saturating_sub(base);
    eprintln!(
        "daemon RSS {} MiB -> +{} MiB with 1,000 streams open and {} MiB (SPDY) + {} MiB (WebSocket) pushed unread",
        base >> 10,
        grown >> 10,
        spdy_sent >> 20,
        ws_sent >> 20
    );
    assert!(
        grown < RSS_ALLOWANCE_KIB,
        "daemon RSS grew by {} MiB",
        grown >> 10
    );

    // When the hostile clients leave, their sessions end and the memory is not kept growing.
    drop((open, hog, pairs, pusher, wsc));
    others_are_served(&mut d, &pod, &ctr, "after the hostile clients left").await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_and_the_session_cap_holds() {
    let (mut d, pod, _ctr) =
        daemon_with_servers("stream_idle_timeout = \"2s\"\nmax_streaming_sessions = 2\n").await;

    // Idle: a forwarded connection on which nothing moves is closed with its session.
    let url = port_forward_url(&mut d, &pod).await;
    let c = spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false)
        .await
        .unwrap();
    let (mut data, _error) = c.port_forward_streams(9002, 1).await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(20), data.read()).await;
    let took = started.elapsed();
    assert!(
        matches!(ended, Ok(None)),
        "idle session not closed: {ended:?}"
    );
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    drop((c, data, _error));

    // Two sessions at once are served; a third is refused with 503 and its URL still works
    // once one ends.
    let a = spdy::SpdyClient::connect(
        &port_forward_url(&mut d, &pod).await,
        &["portforward.k8s.io"],
        false,
    )
    .await
    .unwrap();
    let b = spdy::SpdyClient::connect(
        &port_forward_url(&mut d, &pod).await,
        &["portforward.k8s.io"],
        false,
    )
    .await
    .unwrap();
    // Keep both busy enough not to be idle while the third knocks.
    let url = port_forward_url(&mut d, &pod).await;
    match spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await {
        Err(ClientError::Refused { status: 503, body }) => {
            assert!(body.contains("too many streaming sessions"), "{body}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a third session was accepted"),
    }
    let got = spdy::port_forward_once(&a, 8080, 0, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&got).ends_with("hello-from-pod\n"));
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        match spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await {
            Ok(c) => break c,
            Err(ClientError::Refused { status: 503, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("after a session ended: {e}\n{}", d.log()),
        }
    };
    let got = spdy::port_forward_once(&c, 8080, 0, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&got).ends_with("hello-from-pod\n"));
    drop((a, c));
    d.shutdown().await;
}
