//! End-to-end tests of the streaming server with the crate's own clients against a backend
//! that runs real processes (pipes and a real pty) and dials real TCP listeners.

mod backend;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crius_streaming::client::{self, spdy, ws, ClientError, ExecIo, ExitStatus};
use crius_streaming::{AttachRequest, Config, ExecRequest, PortForwardRequest, Server, TermSize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("test exceeded {LIMIT:?}"),
    }
}

async fn server() -> Server {
    server_with(Config::default()).await
}

async fn server_with(cfg: Config) -> Server {
    match Server::start(cfg, Arc::new(backend::LocalBackend)).await {
        Ok(s) => s,
        Err(e) => panic!("starting server: {e}"),
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn exec_req(cmd: Vec<String>, stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd,
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

fn io(stdin: Option<&[u8]>, tty: bool) -> ExecIo {
    ExecIo {
        stdin: stdin.map(<[u8]>::to_vec),
        close_stdin: true,
        stdout: true,
        stderr: !tty,
        tty,
        resize: None,
    }
}

fn ok<T>(r: Result<T, ClientError>) -> T {
    r.unwrap_or_else(|e| panic!("client error: {e}"))
}

const SPDY_V4: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

// ---------------------------------------------------------------- exec over WebSocket

#[tokio::test]
async fn ws_v5_exec_output_and_exit_code() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("echo out; echo err >&2; exit 7"), false, false));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(7));
    })
    .await
}

#[tokio::test]
async fn ws_v5_stdin_round_trip_with_half_close() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(vec!["cat".into()], true, false));
        let out = ok(ws::exec(
            &url,
            &["v5.channel.k8s.io"],
            io(Some(b"hello\nworld\n"), false),
        )
        .await);
        assert_eq!(out.stdout, b"hello\nworld\n");
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

#[tokio::test]
async fn ws_large_transfer_binary_and_base64() {
    bounded(async {
        let s = server().await;
        let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        for proto in ["v5.channel.k8s.io", "v4.base64.channel.k8s.io"] {
            let url = s.exec_url(exec_req(vec!["cat".into()], true, false));
            // v4 has no stdin half-close: `head -c` ends on its own once it has everything.
            let url = if proto.starts_with("v4") {
                s.exec_url(exec_req(
                    sh(&format!("head -c {}", input.len())),
                    true,
                    false,
                ))
            } else {
                url
            };
            let out = ok(ws::exec(&url, &[proto], io(Some(&input), false)).await);
            assert_eq!(out.stdout.len(), input.len(), "{proto}");
            assert!(out.stdout == input, "{proto}: content differs");
            assert_eq!(out.status, ExitStatus::Success, "{proto}");
        }
    })
    .await
}

#[tokio::test]
async fn ws_v4_base64_and_v1_status_formats() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("printf 'a\\001b'; exit 3"), false, false));
        let out = ok(ws::exec(&url, &["v4.base64.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.stdout, b"a\x01b");
        assert_eq!(out.status, ExitStatus::Code(3));

        // channel.k8s.io reports failures as plain text and success as silence.
        let url = s.exec_url(exec_req(sh("exit 3"), false, false));
        let out = ok(ws::exec(&url, &["channel.k8s.io"], io(None, false)).await);
        match out.status {
            ExitStatus::Error(m) => assert!(m.contains("exit code 3"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        let url = s.exec_url(exec_req(sh("true"), false, false));
        let out = ok(ws::exec(&url, &["channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

#[tokio::test]
async fn ws_first_message_is_empty_on_stdout() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("sleep 0.2; echo x"), false, false));
        let mut c = ok(ws::WsClient::connect(&url, &["v4.channel.k8s.io"]).await);
        assert_eq!(c.protocol.as_deref(), Some("v4.channel.k8s.io"));
        let first = ok(c.rx.recv().await);
        assert_eq!(first, Some((1, Vec::new())));
    })
    .await
}

#[tokio::test]
async fn ws_backend_error_is_reported() {
    bounded(async {
        let s = server().await;
        let mut req = exec_req(sh("true"), false, false);
        req.container_id = "missing".into();
        let url = s.exec_url(req);
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        match out.status {
            ExitStatus::Error(m) => assert!(m.contains("not found"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await
}

// ---------------------------------------------------------------- exec over SPDY

#[tokio::test]
async fn spdy_v4_exec_output_and_exit_code() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("echo out; echo err >&2; exit 7"), false, false));
        let out = ok(spdy::exec(&url, SPDY_V4, io(None, false), false).await);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(7));
    })
    .await
}

#[tokio::test]
async fn spdy_stdin_round_trip() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(vec!["cat".into()], true, false));
        let out = ok(spdy::exec(&url, SPDY_V4, io(Some(b"ping\n"), false), false).await);
        assert_eq!(out.stdout, b"ping\n");
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

#[tokio::test]
async fn spdy_large_transfer_with_and_without_flow_control() {
    bounded(async {
        let s = server().await;
        // 1 MiB in and out: far beyond the 64 KiB initial windows in both directions.
        let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        for flow in [false, true] {
            let url = s.exec_url(exec_req(vec!["cat".into()], true, false));
            let out = ok(spdy::exec(&url, SPDY_V4, io(Some(&input), false), flow).await);
            assert_eq!(out.stdout.len(), input.len(), "flow control {flow}");
            assert!(out.stdout == input, "flow control {flow}: content differs");
            assert_eq!(out.status, ExitStatus::Success);
        }
    })
    .await
}

#[tokio::test]
async fn spdy_stdin_to_a_slow_reader_with_and_without_flow_control() {
    bounded(async {
        // kubectl cp style: a peer without flow control pushes 4 MiB at a process that starts
        // reading late; the server must apply backpressure and lose nothing.
        let s = server().await;
        let input: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 249) as u8).collect();
        // With flow control the client waits for the server's WINDOW_UPDATEs instead, which
        // only come as the process consumes stdin.
        for flow in [false, true] {
            let url = s.exec_url(exec_req(sh("sleep 0.5; cat"), true, false));
            let out = ok(spdy::exec(&url, SPDY_V4, io(Some(&input), false), flow).await);
            assert_eq!(out.stdout.len(), input.len(), "flow control {flow}");
            assert!(out.stdout == input, "flow control {flow}: content differs");
            assert_eq!(out.status, ExitStatus::Success);
        }
    })
    .await
}

#[tokio::test]
async fn spdy_server_honours_window_of_a_flow_controlled_client() {
    bounded(async {
        let s = server().await;
        let total = 200_000usize;
        let url = s.exec_url(exec_req(
            sh(&format!("head -c {total} /dev/zero")),
            false,
            false,
        ));
        let c = ok(spdy::SpdyClient::connect(&url, SPDY_V4, true).await);
        c.set_auto_window_update(false);
        let mut e = ok(c.open(&[("streamType", "error")]).await);
        let mut o = ok(c.open(&[("streamType", "stdout")]).await);
        let _r = ok(c.open(&[("streamType", "stderr")]).await);
        let mut got = 0usize;
        // Without window updates the server must stop at the initial 64 KiB window.
        loop {
            match tokio::time::timeout(Duration::from_millis(1000), o.read()).await {
                Ok(Some(chunk)) => got += chunk.len(),
                Ok(None) => panic!("stdout ended after {got} bytes without window"),
                Err(_) => break,
            }
        }
        assert_eq!(got, 64 * 1024);
        // Granting window on the stream alone is not enough: the session window is spent too.
        ok(c.window_update(o.id, 1000).await);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), o.read())
                .await
                .is_err(),
            "data flowed without session window"
        );
        ok(c.window_update(0, 1000).await);
        let chunk = tokio::time::timeout(Duration::from_secs(5), o.read()).await;
        assert_eq!(chunk.ok().flatten().map(|c| c.len()), Some(1000));
        got += 1000;
        // Open the windows wide and the rest arrives.
        ok(c.window_update(o.id, 1 << 30).await);
        ok(c.window_update(0, 1 << 30).await);
        while let Some(chunk) = o.read().await {
            got += chunk.len();
        }
        assert_eq!(got, total);
        assert_eq!(
            ExitStatus::decode(&e.read_to_end().await, true),
            ExitStatus::Success
        );
    })
    .await
}

#[tokio::test]
async fn spdy_v2_reports_plain_text() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("exit 9"), false, false));
        let out = ok(spdy::exec(&url, &["v2.channel.k8s.io"], io(None, false), false).await);
        match out.status {
            ExitStatus::Error(m) => assert!(m.contains("exit code 9"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn spdy_unsupported_protocol_is_forbidden_and_token_survives() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("true"), false, false));
        match spdy::SpdyClient::connect(&url, &["v9.channel.k8s.io"], false).await {
            Err(ClientError::Refused { status, .. }) => assert_eq!(status, 403),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("upgrade should have been refused"),
        }
        let out = ok(spdy::exec(&url, SPDY_V4, io(None, false), false).await);
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

// ---------------------------------------------------------------- tty and resize

#[tokio::test]
async fn tty_exec_and_resize_over_spdy_and_ws() {
    bounded(async {
        let s = server().await;
        let script = "read x; stty size";
        let mut tty_io = io(Some(b"go\n"), true);
        tty_io.close_stdin = false;
        tty_io.resize = Some(TermSize {
            width: 123,
            height: 45,
        });

        let url = s.exec_url(exec_req(sh(script), true, true));
        let out = ok(spdy::exec(&url, SPDY_V4, tty_io.clone(), false).await);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("45 123"), "spdy stty output: {text:?}");
        assert_eq!(out.status, ExitStatus::Success);

        tty_io.resize = Some(TermSize {
            width: 99,
            height: 33,
        });
        let url = s.exec_url(exec_req(sh(script), true, true));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], tty_io).await);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("33 99"), "ws stty output: {text:?}");

        // The process starts only once the client's first size arrived, so even a command
        // that asks at once sees it.
        let mut sized = io(None, true);
        sized.resize = Some(TermSize {
            width: 70,
            height: 20,
        });
        for spdy_proto in [true, false] {
            let url = s.exec_url(exec_req(sh("stty size"), false, true));
            let out = if spdy_proto {
                ok(spdy::exec(&url, SPDY_V4, sized.clone(), false).await)
            } else {
                ok(ws::exec(&url, &["v5.channel.k8s.io"], sized.clone()).await)
            };
            assert_eq!(out.stdout, b"20 70\r\n", "spdy={spdy_proto}");
        }

        // Without tty there is no terminal at all.
        let url = s.exec_url(exec_req(sh("tty; true"), false, false));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.stdout, b"not a tty\n");
        let url = s.exec_url(exec_req(sh("tty"), false, true));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, true)).await);
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("/dev/pts/"),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    })
    .await
}

// ---------------------------------------------------------------- attach

#[tokio::test]
async fn attach_over_both_protocols() {
    bounded(async {
        let s = server().await;
        let req = AttachRequest {
            container_id: "c1".into(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: false,
        };
        let mut aio = io(Some(b"attached\n"), false);
        aio.stderr = false;
        let out = ok(spdy::exec(&s.attach_url(req.clone()), SPDY_V4, aio.clone(), false).await);
        assert_eq!(out.stdout, b"attached\n");
        assert_eq!(out.status, ExitStatus::Success);
        let out = ok(ws::exec(&s.attach_url(req.clone()), &["v5.channel.k8s.io"], aio).await);
        assert_eq!(out.stdout, b"attached\n");
        // An attach token does not open exec.
        let url = s.attach_url(req).replace("/attach/", "/exec/");
        assert!(matches!(
            ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await,
            Err(ClientError::Refused { status: 404, .. })
        ));
    })
    .await
}

// ---------------------------------------------------------------- client going away

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for tokio's reaper is dead too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn dropping_the_client_kills_the_process() {
    bounded(async {
        let s = server().await;
        for proto in ["spdy", "ws"] {
            let url = s.exec_url(exec_req(sh("echo $$; exec sleep 30"), false, false));
            let pid: i32 = if proto == "spdy" {
                let c = ok(spdy::SpdyClient::connect(&url, SPDY_V4, false).await);
                let _e = ok(c.open(&[("streamType", "error")]).await);
                let mut o = ok(c.open(&[("streamType", "stdout")]).await);
                let _r = ok(c.open(&[("streamType", "stderr")]).await);
                let line = o.read().await.unwrap_or_default();
                String::from_utf8_lossy(&line).trim().parse().unwrap_or(0)
            } else {
                let mut c = ok(ws::WsClient::connect(&url, &["v5.channel.k8s.io"]).await);
                let mut line = Vec::new();
                while line.is_empty() {
                    match ok(c.rx.recv().await) {
                        Some((1, d)) => line = d,
                        Some(_) => {}
                        None => break,
                    }
                }
                String::from_utf8_lossy(&line).trim().parse().unwrap_or(0)
            };
            assert!(pid > 0, "{proto}: no pid");
            assert!(!process_gone(pid), "{proto}: process died early");
            // The client (and its connection) was dropped at the end of the block above.
            let start = Instant::now();
            while !process_gone(pid) {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "{proto}: pid {pid} survived its client"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await
}

// ---------------------------------------------------------------- tokens and refusals

async fn raw_status(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut tcp = ok(tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        }));
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut buf = vec![0u8; 512];
    let n = tcp.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn tokens_are_single_use_and_expire() {
    bounded(async {
        let s = server_with(Config {
            token_ttl: Duration::from_millis(300),
            ..Config::default()
        })
        .await;
        let url = s.exec_url(exec_req(sh("true"), false, false));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.status, ExitStatus::Success);
        // Reuse.
        assert!(matches!(
            ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await,
            Err(ClientError::Refused { status: 404, .. })
        ));
        assert!(matches!(
            spdy::exec(&url, SPDY_V4, io(None, false), false).await,
            Err(ClientError::Refused { status: 404, .. })
        ));
        // Expiry.
        let url = s.exec_url(exec_req(sh("true"), false, false));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(matches!(
            ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await,
            Err(ClientError::Refused { status: 404, .. })
        ));
        // Unknown token and unknown path.
        let base = s.base_url();
        let upgrade = [
            ("Connection", "Upgrade".to_string()),
            ("Upgrade", "SPDY/3.1".to_string()),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io".to_string()),
        ];
        assert_eq!(
            ok(client::plain_get(&format!("{base}/exec/nope"), &upgrade).await),
            404
        );
        assert_eq!(
            ok(client::plain_get(&format!("{base}/other/x"), &upgrade).await),
            404
        );
    })
    .await
}

#[tokio::test]
async fn configured_base_url_is_used_in_urls() {
    bounded(async {
        let s = server_with(Config {
            base_url: Some("http://node-1.example:10010/".into()),
            ..Config::default()
        })
        .await;
        let url = s.exec_url(exec_req(sh("true"), false, false));
        assert!(
            url.starts_with("http://node-1.example:10010/exec/"),
            "{url}"
        );
        let url = s.port_forward_url(PortForwardRequest::default());
        assert!(
            url.starts_with("http://node-1.example:10010/portforward/"),
            "{url}"
        );
    })
    .await
}

#[tokio::test]
async fn wrong_method_or_missing_upgrade_is_bad_request() {
    bounded(async {
        let s = server().await;
        let url = s.exec_url(exec_req(sh("true"), false, false));
        let path = url.trim_start_matches(&s.base_url()).to_string();
        let addr = s.local_addr();
        let no_upgrade = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(raw_status(addr, &no_upgrade).await, 400);
        let put = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(raw_status(addr, &put).await, 400);
        // Neither consumed the token.
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

// ---------------------------------------------------------------- port forward

/// A "pod" service: answers each connection by echoing everything prefixed with its port,
/// until the client half-closes.
async fn echo_listener() -> u16 {
    let l = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf).await;
                let mut reply = format!("{port}:").into_bytes();
                reply.extend_from_slice(&buf);
                let _ = c.write_all(&reply).await;
                let _ = c.shutdown().await;
            });
        }
    });
    port
}

/// A "pod" service for WebSocket forwarding (no half-close there): reads one line, answers,
/// closes.
async fn line_listener() -> u16 {
    let l = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut c = BufReader::new(c);
                let mut line = String::new();
                let _ = c.read_line(&mut line).await;
                let _ = c
                    .get_mut()
                    .write_all(format!("{port}:{line}").as_bytes())
                    .await;
                let _ = c.get_mut().shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn spdy_port_forward_round_trip_several_ports_concurrently() {
    bounded(async {
        let s = server().await;
        let p1 = echo_listener().await;
        let p2 = echo_listener().await;
        let url = s.port_forward_url(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            ports: vec![],
        });
        let c = Arc::new(ok(spdy::SpdyClient::connect(
            &url,
            &["portforward.k8s.io"],
            false,
        )
        .await));
        assert_eq!(c.protocol.as_deref(), Some("portforward.k8s.io"));
        let got = ok(spdy::port_forward_once(&c, p1, 0, b"hello").await);
        assert_eq!(got, format!("{p1}:hello").into_bytes());

        // 20 concurrent connections over the same SPDY connection, alternating ports, each
        // carrying 100 KiB (more than a window) so the streams interleave.
        let mut tasks = Vec::new();
        for i in 1..=20u32 {
            let c = c.clone();
            let port = if i % 2 == 0 { p1 } else { p2 };
            tasks.push(tokio::spawn(async move {
                let payload = vec![b'a' + (i % 26) as u8; 100 * 1024];
                let got = spdy::port_forward_once(&c, port, i, &payload).await;
                (port, payload, got)
            }));
        }
        for t in tasks {
            let (port, payload, got) = match t.await {
                Ok(v) => v,
                Err(e) => panic!("join: {e}"),
            };
            let got = ok(got);
            let mut want = format!("{port}:").into_bytes();
            want.extend_from_slice(&payload);
            assert!(got == want, "port {port}: {} bytes back", got.len());
        }
    })
    .await
}

#[tokio::test]
async fn spdy_streams_outlive_their_client_handle() {
    bounded(async {
        let s = server().await;
        let port = echo_listener().await;
        let url = s.port_forward_url(PortForwardRequest::default());
        let (mut data, mut error) = {
            let c = ok(spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await);
            ok(c.port_forward_streams(port, 0).await)
        };
        ok(data.write(b"still here").await);
        ok(data.close().await);
        assert_eq!(
            data.read_to_end().await,
            format!("{port}:still here").into_bytes()
        );
        assert!(error.read_to_end().await.is_empty());
    })
    .await
}

#[tokio::test]
async fn spdy_port_forward_to_closed_port_reports_error() {
    bounded(async {
        let s = server().await;
        // Bind and drop to get a port with nothing listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0");
            l.ok()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
                .unwrap_or(1)
        };
        let url = s.port_forward_url(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            ports: vec![],
        });
        let c = ok(spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await);
        match spdy::port_forward_once(&c, closed, 0, b"x").await {
            Err(ClientError::Protocol(m)) => {
                assert!(
                    m.contains(&format!("error forwarding port {closed}")),
                    "{m}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn ws_port_forward_two_ports() {
    bounded(async {
        let s = server().await;
        let p1 = line_listener().await;
        let p2 = line_listener().await;
        let url = s.port_forward_url(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            ports: vec![],
        });
        let url = format!("{url}?port={p1}&port={p2}");
        let mut c = ok(ws::WsClient::connect(&url, &["v4.channel.k8s.io"]).await);
        // Each channel opens with its port, little endian.
        let mut opened = Vec::new();
        for _ in 0..4 {
            opened.push(ok(c.rx.recv().await).unwrap_or_default());
        }
        assert_eq!(
            opened,
            vec![
                (0, p1.to_le_bytes().to_vec()),
                (1, p1.to_le_bytes().to_vec()),
                (2, p2.to_le_bytes().to_vec()),
                (3, p2.to_le_bytes().to_vec()),
            ]
        );
        ok(c.tx.send(0, b"one\n").await);
        ok(c.tx.send(2, b"two\n").await);
        let (mut d0, mut d2) = (Vec::new(), Vec::new());
        while let Some((ch, data)) = ok(c.rx.recv().await) {
            match ch {
                0 => d0.extend(data),
                2 => d2.extend(data),
                other => panic!(
                    "unexpected channel {other}: {:?}",
                    String::from_utf8_lossy(&data)
                ),
            }
        }
        assert_eq!(d0, format!("{p1}:one\n").into_bytes());
        assert_eq!(d2, format!("{p2}:two\n").into_bytes());

        // Ports from the CRI request when the query names none; base64 variant.
        let url = s.port_forward_url(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            ports: vec![i32::from(p1)],
        });
        let got = ok(ws::port_forward_once(&url, &["v4.base64.channel.k8s.io"], b"b64\n").await);
        assert_eq!(got, format!("{p1}:b64\n").into_bytes());
    })
    .await
}

/// A "pod" service that never speaks; reports on `closed` when a connection reaches EOF.
async fn silent_listener() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = tx.send(());
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn client_leaving_closes_pod_connections() {
    bounded(async {
        let s = server().await;
        let (port, mut closed) = silent_listener().await;
        // SPDY: the client opens a forward, then its connection drops.
        let url = s.port_forward_url(PortForwardRequest::default());
        let c = ok(spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await);
        let (data, error) = ok(c.port_forward_streams(port, 1).await);
        ok(data.write(b"hi").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The streams share the connection; dropping all of them closes it.
        drop((c, data, error));
        let r = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert!(matches!(r, Ok(Some(()))), "spdy: pod connection left open");

        // WebSocket.
        let url = s.port_forward_url(PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            ports: vec![i32::from(port)],
        });
        let mut c = ok(ws::WsClient::connect(&url, &["v4.channel.k8s.io"]).await);
        ok(c.tx.send(0, b"hi").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(c);
        let r = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert!(
            matches!(r, Ok(Some(()))),
            "websocket: pod connection left open"
        );
    })
    .await
}

/// A "pod" service that streams without end; reports on `closed` when a write fails (its
/// client connection was closed).
async fn endless_listener() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let chunk = vec![b'y'; 16 * 1024];
                while c.write_all(&chunk).await.is_ok() {}
                let _ = tx.send(());
            });
        }
    });
    (port, rx)
}

/// client-go half-closes the data stream when its local connection ends and then drops the
/// stream without a reset: a pod that keeps talking must not keep the connection forever.
#[tokio::test]
async fn half_closed_forward_to_an_endless_pod_is_closed_after_the_grace() {
    bounded(async {
        let s = server().await;
        let (port, mut closed) = endless_listener().await;
        for tunneled in [false, true] {
            let url = s.port_forward_url(PortForwardRequest::default());
            let c = if tunneled {
                ok(spdy::SpdyClient::connect_tunneled(&url, &["portforward.k8s.io"], false).await)
            } else {
                ok(spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await)
            };
            let (mut data, mut error) = ok(c.port_forward_streams(port, 1).await);
            assert!(data.read().await.is_some(), "the pod's data arrives");
            ok(data.close().await);
            let started = Instant::now();
            // Keep reading (as spdystream does, discarding) until the server ends the stream.
            let drained = tokio::time::timeout(Duration::from_secs(15), async {
                while data.read().await.is_some() {}
            })
            .await;
            assert!(
                drained.is_ok(),
                "tunneled={tunneled}: data stream never ended"
            );
            let r = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
            assert!(
                matches!(r, Ok(Some(()))),
                "tunneled={tunneled}: pod connection left open"
            );
            let took = started.elapsed();
            assert!(
                took >= Duration::from_secs(4) && took < Duration::from_secs(12),
                "tunneled={tunneled}: closed after {took:?}"
            );
            assert!(error.read_to_end().await.is_empty());
        }
    })
    .await
}

// ---------------------------------------------------------------- session limits

#[tokio::test]
async fn idle_sessions_are_closed_and_busy_ones_are_not() {
    bounded(async {
        let s = server_with(Config {
            idle_timeout: Duration::from_secs(1),
            ..Config::default()
        })
        .await;
        let (port, mut closed) = silent_listener().await;
        // Idle: a forward is open but nothing moves. The server hangs up, and the pod-side
        // connection is closed with it.
        let url = s.port_forward_url(PortForwardRequest::default());
        let c = ok(spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await);
        let (mut data, _error) = ok(c.port_forward_streams(port, 1).await);
        let started = Instant::now();
        assert!(data.read().await.is_none(), "the idle session ends");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
        let r = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert!(matches!(r, Ok(Some(()))), "pod connection left open");

        // Busy: an exec printing every 300 ms for 2.5 s outlives the 1 s idle timeout.
        let url = s.exec_url(exec_req(
            sh("for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.3; done"),
            false,
            false,
        ));
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.stdout, b"1\n2\n3\n4\n5\n6\n7\n8\n");
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await
}

#[tokio::test]
async fn sessions_over_the_cap_are_refused_and_the_url_survives() {
    bounded(async {
        let s = server_with(Config {
            max_sessions: 2,
            ..Config::default()
        })
        .await;
        let port = echo_listener().await;
        let c1 = ok(spdy::SpdyClient::connect(
            &s.port_forward_url(PortForwardRequest::default()),
            &["portforward.k8s.io"],
            false,
        )
        .await);
        let c2 = ok(spdy::SpdyClient::connect_tunneled(
            &s.port_forward_url(PortForwardRequest::default()),
            &["portforward.k8s.io"],
            false,
        )
        .await);
        let url = s.port_forward_url(PortForwardRequest::default());
        match spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await {
            Err(ClientError::Refused { status: 503, body }) => {
                assert!(body.contains("too many streaming sessions"), "{body}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a third session was accepted"),
        }
        // The sessions admitted work; once one ends, the refused URL is served.
        assert_eq!(
            ok(spdy::port_forward_once(&c1, port, 0, b"one").await),
            format!("{port}:one").into_bytes()
        );
        drop(c2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let c3 = loop {
            match spdy::SpdyClient::connect(&url, &["portforward.k8s.io"], false).await {
                Ok(c) => break c,
                Err(ClientError::Refused { status: 503, .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("after a session ended: {e}"),
            }
        };
        assert_eq!(
            ok(spdy::port_forward_once(&c3, port, 0, b"three").await),
            format!("{port}:three").into_bytes()
        );
    })
    .await
}

#[tokio::test]
async fn websocket_port_forward_port_count_is_bounded() {
    bounded(async {
        let s = server().await;
        let url = s.port_forward_url(PortForwardRequest::default());
        let query: Vec<String> = (1..=65).map(|p| format!("port={}", 1000 + p)).collect();
        let url = format!("{url}?{}", query.join("&"));
        match ws::WsClient::connect(&url, &["v4.channel.k8s.io"]).await {
            Err(ClientError::Refused { status: 400, body }) => {
                assert!(body.contains("at most 64 ports"), "{body}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("65 ports accepted"),
        }
    })
    .await
}

// ------------------------------------------- SPDY tunnelled over WebSocket (client-go 1.31+)

#[tokio::test]
async fn tunneled_spdy_port_forward_concurrent_and_errors() {
    bounded(async {
        let s = server().await;
        let p1 = echo_listener().await;
        let p2 = echo_listener().await;
        let url = s.port_forward_url(PortForwardRequest::default());
        let c = Arc::new(ok(spdy::SpdyClient::connect_tunneled(
            &url,
            &["portforward.k8s.io"],
            false,
        )
        .await));
        assert_eq!(c.protocol.as_deref(), Some("portforward.k8s.io"));
        let got = ok(spdy::port_forward_once(&c, p1, 0, b"hello").await);
        assert_eq!(got, format!("{p1}:hello").into_bytes());

        // 12 concurrent connections, each more than a window, interleaved in binary messages.
        let mut tasks = Vec::new();
        for i in 1..=12u32 {
            let c = c.clone();
            let port = if i % 2 == 0 { p1 } else { p2 };
            tasks.push(tokio::spawn(async move {
                let payload = vec![b'a' + (i % 26) as u8; 150 * 1024];
                let got = spdy::port_forward_once(&c, port, i, &payload).await;
                (port, payload, got)
            }));
        }
        for t in tasks {
            let (port, payload, got) = match t.await {
                Ok(v) => v,
                Err(e) => panic!("join: {e}"),
            };
            let got = ok(got);
            let mut want = format!("{port}:").into_bytes();
            want.extend_from_slice(&payload);
            assert!(got == want, "port {port}: {} bytes back", got.len());
        }

        // A port nobody listens on is reported on the error stream, and the session goes on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0");
            l.ok()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
                .unwrap_or(1)
        };
        match spdy::port_forward_once(&c, closed, 50, b"x").await {
            Err(ClientError::Protocol(m)) => {
                assert!(
                    m.contains(&format!("error forwarding port {closed}")),
                    "{m}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        let got = ok(spdy::port_forward_once(&c, p2, 51, b"after").await);
        assert_eq!(got, format!("{p2}:after").into_bytes());
    })
    .await
}

#[tokio::test]
async fn tunneled_spdy_client_leaving_closes_pod_connections() {
    bounded(async {
        let s = server().await;
        let (port, mut closed) = silent_listener().await;
        let url = s.port_forward_url(PortForwardRequest::default());
        let c = ok(spdy::SpdyClient::connect_tunneled(&url, &["portforward.k8s.io"], true).await);
        let (data, error) = ok(c.port_forward_streams(port, 1).await);
        ok(data.write(b"hi").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop((c, data, error));
        let r = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert!(matches!(r, Ok(Some(()))), "pod connection left open");
    })
    .await
}

#[tokio::test]
async fn tunnel_is_only_offered_for_port_forward() {
    bounded(async {
        let s = server().await;
        // exec does not speak the tunnel: the upgrade is refused and the token survives.
        let url = s.exec_url(exec_req(sh("echo hi"), false, false));
        match spdy::SpdyClient::connect_tunneled(&url, &["v4.channel.k8s.io"], false).await {
            Err(ClientError::Refused { status: 400, body }) => {
                assert!(body.contains("subprotocols"), "{body}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("exec accepted a SPDY tunnel"),
        }
        let out = ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await);
        assert_eq!(out.stdout, b"hi\n");
    })
    .await
}

// ---------------------------------------------------------------- latency figure

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::test]
async fn exec_round_trip_latency() {
    bounded(async {
        let s = server().await;
        for (name, spdy_proto) in [("spdy v4", true), ("websocket v5", false)] {
            let mut samples = Vec::with_capacity(50);
            for _ in 0..50 {
                let start = Instant::now();
                let mut req = exec_req(vec!["true".into()], false, false);
                req.stderr = true;
                let url = s.exec_url(req);
                let out = if spdy_proto {
                    ok(spdy::exec(&url, SPDY_V4, io(None, false), false).await)
                } else {
                    ok(ws::exec(&url, &["v5.channel.k8s.io"], io(None, false)).await)
                };
                assert_eq!(out.status, ExitStatus::Success);
                samples.push(start.elapsed());
            }
            samples.sort();
            println!(
                "exec `true` round trip over {name}: median {:?}, p95 {:?} (50 runs, {} build)",
                percentile(&samples, 0.5),
                percentile(&samples, 0.95),
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
            );
        }
    })
    .await
}
