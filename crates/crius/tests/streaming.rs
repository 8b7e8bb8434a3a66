//! E2E: the CRI Exec, Attach and PortForward RPCs against the real daemon, driven through the
//! WebSocket and SPDY protocol clients of crius-streaming, with real runc containers and (for port
//! forwarding) a pod on its own CNI network namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use crius_streaming::client::{spdy, ws, ClientError, ExecIo, ExecOutput, ExitStatus};
use crius_streaming::spdy::{
    HEADER_STREAM_TYPE, STREAM_ERROR, STREAM_RESIZE, STREAM_STDERR, STREAM_STDIN, STREAM_STDOUT,
};
use crius_streaming::TermSize;
use tonic::Code;

/// Bound on any single streaming session in these tests.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ws,
    Spdy,
}

const TRANSPORTS: [Transport; 2] = [Transport::Ws, Transport::Spdy];

async fn exec_url(
    d: &mut Daemon,
    ctr: &str,
    cmd: &[&str],
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<String, tonic::Status> {
    d.rt.exec(cri::ExecRequest {
        container_id: ctr.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout,
        stderr,
    })
    .await
    .map(|r| r.into_inner().url)
}

async fn attach_url(
    d: &mut Daemon,
    ctr: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> String {
    d.rt.attach(cri::AttachRequest {
        container_id: ctr.to_string(),
        stdin,
        tty,
        stdout,
        stderr,
    })
    .await
    .unwrap_or_else(|e| panic!("Attach {ctr}: {e}"))
    .into_inner()
    .url
}

async fn port_forward_url(d: &mut Daemon, pod: &str, ports: &[i32]) -> String {
    d.rt.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port: ports.to_vec(),
    })
    .await
    .unwrap_or_else(|e| panic!("PortForward {pod}: {e}"))
    .into_inner()
    .url
}

/// One-shot exec/attach over `t` with the newest protocol each transport offers.
async fn run_io(t: Transport, url: &str, io: ExecIo) -> Result<ExecOutput, ClientError> {
    let fut = async {
        match t {
            Transport::Ws => ws::exec(url, &[ws_proto()], io).await,
            Transport::Spdy => spdy::exec(url, &[spdy_proto()], io, false).await,
        }
    };
    tokio::time::timeout(SESSION_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{t:?} session on {url} did not finish in {SESSION_TIMEOUT:?}"))
}

fn ws_proto() -> &'static str {
    crius_streaming::ws::V5_BINARY
}

fn spdy_proto() -> &'static str {
    crius_streaming::spdy::REMOTECOMMAND_V4
}

/// An interactive exec/attach session: stdin, resize and stdout read up to a pattern.
enum Session {
    Ws {
        c: ws::WsClient,
        out: Vec<u8>,
        seen: usize,
    },
    Spdy {
        _c: spdy::SpdyClient,
        _error: spdy::SpdyStream,
        stdin: Option<spdy::SpdyStream>,
        stdout: Option<spdy::SpdyStream>,
        _stderr: Option<spdy::SpdyStream>,
        resize: Option<spdy::SpdyStream>,
        out: Vec<u8>,
        seen: usize,
    },
}

impl Session {
    async fn open(t: Transport, url: &str, stdin: bool, stderr: bool, tty: bool) -> Session {
        match t {
            Transport::Ws => Session::Ws {
                c: ws::WsClient::connect(url, &[ws_proto()])
                    .await
                    .unwrap_or_else(|e| panic!("ws connect {url}: {e}")),
                out: Vec::new(),
                seen: 0,
            },
            Transport::Spdy => {
                let c = spdy::SpdyClient::connect(url, &[spdy_proto()], false)
                    .await
                    .unwrap_or_else(|e| panic!("spdy connect {url}: {e}"));
                let open = |kind: &'static str| {
                    let c = &c;
                    async move {
                        c.open(&[(HEADER_STREAM_TYPE, kind)])
                            .await
                            .unwrap_or_else(|e| panic!("open SPDY {kind} stream: {e}"))
                    }
                };
                let error = open(STREAM_ERROR).await;
                let stdin = if stdin {
                    Some(open(STREAM_STDIN).await)
                } else {
                    None
                };
                let stdout = Some(open(STREAM_STDOUT).await);
                let stderr = if stderr && !tty {
                    Some(open(STREAM_STDERR).await)
                } else {
                    None
                };
                let resize = if tty {
                    Some(open(STREAM_RESIZE).await)
                } else {
                    None
                };
                Session::Spdy {
                    _c: c,
                    _error: error,
                    stdin,
                    stdout,
                    _stderr: stderr,
                    resize,
                    out: Vec::new(),
                    seen: 0,
                }
            }
        }
    }

    async fn send_stdin(&mut self, data: &[u8]) {
        match self {
            Session::Ws { c, .. } => {
                c.tx.send(crius_streaming::ws::CHANNEL_STDIN, data)
                    .await
                    .expect("ws stdin")
            }
            Session::Spdy { stdin, .. } => stdin
                .as_ref()
                .expect("session has stdin")
                .write(data)
                .await
                .expect("spdy stdin"),
        }
    }

    async fn resize(&mut self, width: u16, height: u16) {
        match self {
            Session::Ws { c, .. } => {
                c.tx.resize(TermSize { width, height })
                    .await
                    .expect("ws resize")
            }
            Session::Spdy { resize, .. } => resize
                .as_ref()
                .expect("session has a resize stream")
                .write(format!("{{\"Width\":{width},\"Height\":{height}}}\n").as_bytes())
                .await
                .expect("spdy resize"),
        }
    }

    /// Reads stdout until `pat` appears after what earlier calls consumed; returns the output
    /// from there up to and including `pat`.
    async fn read_until(&mut self, pat: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (out, seen) = match self {
                Session::Ws { out, seen, .. } | Session::Spdy { out, seen, .. } => (out, seen),
            };
            let text = String::from_utf8_lossy(&out[*seen..]).into_owned();
            if let Some(i) = text.find(pat) {
                // `text` is lossy; only ASCII patterns are used, so byte offsets agree as long
                // as the prefix is valid UTF-8, which the test programs guarantee.
                *seen += i + pat.len();
                return text[..i + pat.len()].to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {pat:?} on stdout within {within:?}; got {text:?}"
            );
            let chunk = match self {
                Session::Ws { c, .. } => match tokio::time::timeout(left, c.rx.recv()).await {
                    Ok(Ok(Some((crius_streaming::ws::CHANNEL_STDOUT, data)))) => data,
                    Ok(Ok(Some((crius_streaming::ws::CHANNEL_ERROR, data)))) => panic!(
                        "error channel while waiting for {pat:?}: {}",
                        String::from_utf8_lossy(&data)
                    ),
                    Ok(Ok(Some(_))) => Vec::new(),
                    Ok(Ok(None)) => panic!("session closed while waiting for {pat:?}: {text:?}"),
                    Ok(Err(e)) => panic!("ws receive: {e}"),
                    Err(_) => Vec::new(),
                },
                Session::Spdy { stdout, .. } => {
                    let s = stdout.as_mut().expect("stdout stream");
                    match tokio::time::timeout(left, s.read()).await {
                        Ok(Some(data)) => data,
                        Ok(None) => {
                            panic!("stdout closed while waiting for {pat:?}: {text:?}")
                        }
                        Err(_) => Vec::new(),
                    }
                }
            };
            match self {
                Session::Ws { out, .. } | Session::Spdy { out, .. } => {
                    out.extend_from_slice(&chunk)
                }
            }
        }
    }
}

/// On a failing test, removes every pod through the daemon before the harness kills it, so no
/// container keeps running (and nothing stays mounted) after the test; the daemon's dir and log
/// are kept by the harness.
struct CleanupOnPanic(std::path::PathBuf);

impl CleanupOnPanic {
    fn new(d: &Daemon) -> CleanupOnPanic {
        CleanupOnPanic(d.socket.clone())
    }
}

impl Drop for CleanupOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let socket = self.0.clone();
        // A runtime of its own: we may be unwinding inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(ch) = crius::client::connect(&socket).await else {
                    return;
                };
                let mut c = cri_api::v1::runtime_service_client::RuntimeServiceClient::new(ch);
                let fut = async {
                    let pods = c
                        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                        .await
                        .map(|r| r.into_inner().items)
                        .unwrap_or_default();
                    for p in pods {
                        let _ = c
                            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                                pod_sandbox_id: p.id.clone(),
                            })
                            .await;
                        let _ = c
                            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                                pod_sandbox_id: p.id,
                            })
                            .await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(60), fut).await;
            });
        })
        .join();
    }
}

/// A daemon with busybox pulled and a host-network pod running `sleep` as its container.
async fn daemon_with_sleeper(name: &str) -> (Daemon, String, cri::PodSandboxConfig, String) {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod(name, true).await;
    let ctr = d.run(&pod, &pod_cfg, "main", &["sleep", "3000"]).await;
    (d, pod, pod_cfg, ctr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_stdin_and_exit_codes_over_both_transports() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("exec").await;
    let _cleanup = CleanupOnPanic::new(&d);
    for t in TRANSPORTS {
        // stdout and stderr stay apart.
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "echo to-out; echo to-err >&2"],
            false,
            false,
            true,
            true,
        )
        .await
        .unwrap();
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", d.log()));
        assert_eq!(out.stdout, b"to-out\n", "{t:?} {out:?}");
        assert_eq!(out.stderr, b"to-err\n", "{t:?} {out:?}");
        assert_eq!(out.status, ExitStatus::Success, "{t:?}");

        // stdin round trip through cat, ended by the client's half-close; bigger than a pipe.
        let payload: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let url = exec_url(&mut d, &ctr, &["cat"], false, true, true, false)
            .await
            .unwrap();
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdin: Some(payload.clone()),
                close_stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", d.log()));
        assert_eq!(out.stdout.len(), payload.len(), "{t:?}");
        assert!(out.stdout == payload, "{t:?}: cat output differs");
        assert_eq!(out.status, ExitStatus::Success, "{t:?}");

        // A non-zero exit code is reported.
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "exit 7"],
            false,
            false,
            true,
            false,
        )
        .await
        .unwrap();
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(out.status, ExitStatus::Code(7), "{t:?}");

        // A command that does not exist fails with a message, not a hang.
        let url = exec_url(
            &mut d,
            &ctr,
            &["/no/such/binary"],
            false,
            false,
            true,
            false,
        )
        .await
        .unwrap();
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_ne!(out.status, ExitStatus::Success, "{t:?} {out:?}");
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_tty_gets_first_size_and_resizes() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("tty").await;
    let _cleanup = CleanupOnPanic::new(&d);
    for t in TRANSPORTS {
        // The size sent right after connecting is the one the process starts with.
        for (w, h) in [(123u16, 45u16), (77, 19)] {
            let url = exec_url(&mut d, &ctr, &["stty", "size"], true, false, true, false)
                .await
                .unwrap();
            let out = run_io(
                t,
                &url,
                ExecIo {
                    stdout: true,
                    tty: true,
                    resize: Some(TermSize {
                        width: w,
                        height: h,
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", d.log()));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("{h} {w}"),
                "{t:?}"
            );
            assert_eq!(out.status, ExitStatus::Success, "{t:?}");
        }

        // A later resize changes what the running process sees.
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "stty size; read x; stty size; read y; exit 3"],
            true,
            true,
            true,
            false,
        )
        .await
        .unwrap();
        let mut s = Session::open(t, &url, true, false, true).await;
        s.resize(100, 30).await;
        s.read_until("30 100", SESSION_TIMEOUT).await;
        s.resize(132, 43).await;
        // Let the resize land before the shell runs stty again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.send_stdin(b"\n").await;
        s.read_until("43 132", SESSION_TIMEOUT).await;
        s.send_stdin(b"\n").await;
        drop(s);
    }
    d.shutdown().await;
}

/// The live (non-zombie) processes in `ctr` whose command line contains `needle`.
async fn live_processes(d: &mut Daemon, ctr: &str, needle: &str) -> Vec<String> {
    let r = d
        .exec(ctr, &["ps", "-o", "pid,stat,args"], 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    String::from_utf8_lossy(&r.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -o"))
        .filter(|l| {
            let stat = l.split_whitespace().nth(1).unwrap_or("");
            !stat.starts_with('Z')
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_kills_the_exec_process() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("gone").await;
    let _cleanup = CleanupOnPanic::new(&d);
    for (t, secs) in [(Transport::Ws, "1001"), (Transport::Spdy, "1002")] {
        for tty in [false, true] {
            let url = exec_url(&mut d, &ctr, &["sleep", secs], tty, false, true, false)
                .await
                .unwrap();
            let s = Session::open(t, &url, false, false, tty).await;
            let needle = format!("sleep {secs}");
            let deadline = Instant::now() + Duration::from_secs(15);
            while live_processes(&mut d, &ctr, &needle).await.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{t:?} tty={tty}: exec'd {needle} never showed up\n{}",
                    d.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(s);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let live = live_processes(&mut d, &ctr, &needle).await;
                if live.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{t:?} tty={tty}: {needle} still alive after the client left: {live:?}\n{}",
                    d.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The container itself is untouched.
    let s = d.status(&ctr).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_validation_and_single_use_urls() {
    let (mut d, pod, pod_cfg, ctr) = daemon_with_sleeper("valid").await;
    let _cleanup = CleanupOnPanic::new(&d);

    let (c, m) = code(
        exec_url(
            &mut d,
            "no-such-container",
            &["true"],
            false,
            false,
            true,
            false,
        )
        .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");

    let (c, m) = code(exec_url(&mut d, &ctr, &["true"], true, false, true, true).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, m) = code(exec_url(&mut d, &ctr, &[], false, false, true, false).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");

    // Created but never started, and exited: both are not running.
    let created = d
        .create(
            &pod,
            &pod_cfg,
            container_config("created", &image("busybox:latest"), &["sleep", "100"]),
        )
        .await
        .unwrap();
    let (c, m) = code(exec_url(&mut d, &created, &["true"], false, false, true, false).await);
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    let exited = d.run(&pod, &pod_cfg, "exited", &["true"]).await;
    d.wait_exit(&exited, Duration::from_secs(20)).await;
    let (c, m) = code(exec_url(&mut d, &exited, &["true"], false, false, true, false).await);
    assert_eq!(c, Code::FailedPrecondition, "{m}");

    // A URL works once; the second use is a 404 on either transport.
    for t in TRANSPORTS {
        let url = exec_url(&mut d, &ctr, &["echo", "once"], false, false, true, false)
            .await
            .unwrap();
        let io = ExecIo {
            stdout: true,
            ..Default::default()
        };
        let out = run_io(t, &url, io.clone()).await.unwrap();
        assert_eq!(out.stdout, b"once\n");
        match run_io(t, &url, io).await {
            Err(ClientError::Refused { status: 404, .. }) => {}
            other => panic!("{t:?}: reused URL answered {other:?}"),
        }
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reads_output_and_writes_stdin() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("attach", true).await;
    let mut cfg = container_config(
        "echoer",
        &image("busybox:latest"),
        &[
            "sh",
            "-c",
            "while read l; do echo got:$l; echo err:$l >&2; done",
        ],
    );
    cfg.stdin = true;
    let piped = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&piped).await;

    let mut cfg = container_config(
        "term",
        &image("busybox:latest"),
        &["sh", "-c", "while read l; do echo got:$l; stty size; done"],
    );
    cfg.stdin = true;
    cfg.tty = true;
    let term = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&term).await;

    // Attaching stdin to a container created without it is refused; so is a tty mismatch.
    let plain = d.run(&pod, &pod_cfg, "plain", &["sleep", "300"]).await;
    let r =
        d.rt.attach(cri::AttachRequest {
            container_id: plain.clone(),
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r).0, Code::FailedPrecondition);
    let r =
        d.rt.attach(cri::AttachRequest {
            container_id: piped.clone(),
            stdin: true,
            stdout: true,
            tty: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r).0, Code::InvalidArgument);

    for t in TRANSPORTS {
        let tag = format!("{t:?}").to_lowercase();
        // Pipes: what we write comes back from the loop on stdout; a second attach works after
        // the first one left.
        for round in 0..2 {
            let url = attach_url(&mut d, &piped, false, true, true, true).await;
            let mut s = Session::open(t, &url, true, true, false).await;
            s.send_stdin(format!("{tag}-{round}\n").as_bytes()).await;
            s.read_until(&format!("got:{tag}-{round}"), SESSION_TIMEOUT)
                .await;
            drop(s);
        }

        // Terminal: input, output and resizes reach the container's own pty.
        let url = attach_url(&mut d, &term, true, true, true, false).await;
        let mut s = Session::open(t, &url, true, false, true).await;
        s.resize(91, 17).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.send_stdin(format!("{tag}\n").as_bytes()).await;
        s.read_until(&format!("got:{tag}"), SESSION_TIMEOUT).await;
        s.read_until("17 91", SESSION_TIMEOUT).await;
        s.resize(120, 33).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.send_stdin(b"again\n").await;
        s.read_until("got:again", SESSION_TIMEOUT).await;
        s.read_until("33 120", SESSION_TIMEOUT).await;
        drop(s);
    }

    // Detaching leaves the containers running.
    for id in [&piped, &term] {
        let st = d.status(id).await;
        assert_eq!(
            st.state,
            cri::ContainerState::ContainerRunning as i32,
            "{st:?}"
        );
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_ends_when_the_container_exits() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("attach-end", true).await;
    let mut cfg = container_config(
        "once",
        &image("busybox:latest"),
        &["sh", "-c", "read l; echo bye:$l; exit 4"],
    );
    cfg.stdin = true;
    let ctr = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&ctr).await;
    let url = attach_url(&mut d, &ctr, false, true, true, true).await;
    let out = run_io(
        Transport::Ws,
        &url,
        ExecIo {
            stdin: Some(b"now\n".to_vec()),
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(out.stdout, b"bye:now\n", "{out:?}");
    let st = d.wait_exit(&ctr, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 4);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_into_pod_network_namespace() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("pf", false).await;
    let ctr = d
        .run(
            &pod,
            &pod_cfg,
            "web",
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
            ],
        )
        .await;
    // Ready once the server answers inside the pod.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = d
            .exec(
                &ctr,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
                5,
            )
            .await
            .unwrap();
        if r.exit_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "httpd not up: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing listens on the host's 8080 for this pod: the connection must be made in the pod.
    let get = b"GET / HTTP/1.0\r\n\r\n";
    let check = |t: &str, reply: &[u8]| {
        let text = String::from_utf8_lossy(reply);
        assert!(
            text.starts_with("HTTP/1.") && text.contains("hello-from-pod"),
            "{t}: {text:?}"
        );
    };

    // SPDY: several concurrent connections on one session.
    let url = port_forward_url(&mut d, &pod, &[]).await;
    let c = spdy::SpdyClient::connect(&url, &[crius_streaming::spdy::PORTFORWARD_V1], false)
        .await
        .unwrap();
    let replies = tokio::time::timeout(
        SESSION_TIMEOUT,
        futures::future::join_all((0..6u32).map(|i| spdy::port_forward_once(&c, 8080, i, get))),
    )
    .await
    .expect("SPDY port-forward timed out");
    for r in replies {
        check(
            "spdy",
            &r.unwrap_or_else(|e| panic!("spdy: {e}\n{}", d.log())),
        );
    }
    // A port nobody listens on is an error on the error stream, and the session survives it.
    let err = spdy::port_forward_once(&c, 8081, 100, get).await;
    assert!(err.is_err(), "{err:?}");
    check(
        "spdy after error",
        &spdy::port_forward_once(&c, 8080, 101, get).await.unwrap(),
    );
    drop(c);

    // A server listening on IPv6 loopback only is reached too (as "localhost" would be).
    let ctr6 = d
        .run(
            &pod,
            &pod_cfg,
            "web6",
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && exec httpd -f -p [::1]:8086 -h /tmp/www",
            ],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = d
            .exec(&ctr6, &["wget", "-q", "-O", "-", "http://[::1]:8086/"], 5)
            .await
            .unwrap();
        if r.exit_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "httpd on ::1 not up: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = port_forward_url(&mut d, &pod, &[]).await;
    let c = spdy::SpdyClient::connect(&url, &[crius_streaming::spdy::PORTFORWARD_V1], false)
        .await
        .unwrap();
    check(
        "spdy ::1",
        &spdy::port_forward_once(&c, 8086, 0, get).await.unwrap(),
    );
    drop(c);

    // WebSocket: one connection per URL, port from the query or from the CRI request.
    for i in 0..3 {
        let url = if i % 2 == 0 {
            format!("{}?port=8080", port_forward_url(&mut d, &pod, &[]).await)
        } else {
            port_forward_url(&mut d, &pod, &[8080]).await
        };
        let reply = tokio::time::timeout(
            SESSION_TIMEOUT,
            ws::port_forward_once(&url, &[crius_streaming::ws::V4_BINARY], get),
        )
        .await
        .expect("ws port-forward timed out")
        .unwrap_or_else(|e| panic!("ws {url}: {e}\n{}", d.log()));
        check("ws", &reply);
    }
    d.shutdown().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_round_trip_figure() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("figure").await;
    let _cleanup = CleanupOnPanic::new(&d);
    const N: usize = 30;
    for t in TRANSPORTS {
        let mut times = Vec::with_capacity(N);
        for _ in 0..N {
            let start = Instant::now();
            let url = exec_url(&mut d, &ctr, &["true"], false, false, true, false)
                .await
                .unwrap();
            let out = run_io(
                t,
                &url,
                ExecIo {
                    stdout: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
            times.push(start.elapsed());
            assert_eq!(out.status.code(), Some(0), "{t:?}: {out:?}");
        }
        times.sort();
        eprintln!(
            "exec round trip ({t:?}, Exec RPC + open + `true` + exit status, n={N}): median {:.1} ms, p95 {:.1} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3,
        );
    }
    d.shutdown().await;
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) for the daemon's descriptor count to settle at or below `limit`.
async fn fds_settle(d: &Daemon, limit: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = open_fds(d.pid());
        if n <= limit || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_attach_and_exec_leak_nothing() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("leak", true).await;
    let ticker = d
        .run(
            &pod,
            &pod_cfg,
            "ticker",
            &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
        )
        .await;
    let mut cfg = container_config(
        "tterm",
        &image("busybox:latest"),
        &["sh", "-c", "while true; do echo tock; sleep 0.1; done"],
    );
    cfg.tty = true;
    let tterm = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&tterm).await;

    // One round of every kind of session, each left by the client mid-stream.
    async fn round(d: &mut Daemon, ticker: &str, tterm: &str) {
        for t in TRANSPORTS {
            // Output-only attach: no stdin and no resize to end the backend's input side.
            let url = attach_url(d, ticker, false, false, true, false).await;
            let mut s = Session::open(t, &url, false, false, false).await;
            s.read_until("tick", SESSION_TIMEOUT).await;
            drop(s);
            let url = attach_url(d, tterm, true, false, true, false).await;
            let mut s = Session::open(t, &url, false, false, true).await;
            s.read_until("tock", SESSION_TIMEOUT).await;
            drop(s);
            let url = exec_url(
                d,
                ticker,
                &["sh", "-c", "while true; do echo e; sleep 0.1; done"],
                false,
                true,
                true,
                true,
            )
            .await
            .unwrap();
            let mut s = Session::open(t, &url, true, true, false).await;
            s.read_until("e", SESSION_TIMEOUT).await;
            drop(s);
        }
    }
    round(&mut d, &ticker, &tterm).await;
    let base = fds_settle(&d, 0).await;
    for _ in 0..5 {
        round(&mut d, &ticker, &tterm).await;
    }
    // 30 sessions; a leak of one descriptor per session would show as +30.
    let after = fds_settle(&d, base + 3).await;
    assert!(
        after <= base + 3,
        "daemon descriptors grew from {base} to {after} over 30 abandoned sessions"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stdin_once_closes_container_stdin() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("once", true).await;
    for (t, name) in [(Transport::Ws, "once-ws"), (Transport::Spdy, "once-spdy")] {
        let mut cfg = container_config(
            name,
            &image("busybox:latest"),
            &["sh", "-c", "cat; echo eof-seen; exit 6"],
        );
        cfg.stdin = true;
        cfg.stdin_once = true;
        let ctr = d.create(&pod, &pod_cfg, cfg).await.unwrap();
        d.start_ctr(&ctr).await;
        let url = attach_url(&mut d, &ctr, false, true, true, true).await;
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdin: Some(b"line1\nline2\n".to_vec()),
                close_stdin: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", d.log()));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "line1\nline2\neof-seen\n",
            "{t:?} {out:?}\n{}",
            d.log()
        );
        let st = d.wait_exit(&ctr, Duration::from_secs(20)).await;
        assert_eq!(st.exit_code, 6, "{t:?}");
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_large_output_and_lingering_children() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("bulk").await;
    let _cleanup = CleanupOnPanic::new(&d);
    let want_out: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    let want_err: String = (1..=20_000).map(|i| format!("{i}\n")).collect();
    for (t, flow_control) in [
        (Transport::Ws, false),
        (Transport::Spdy, false),
        (Transport::Spdy, true),
    ] {
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "seq 1 20000 >&2; seq 1 200000"],
            false,
            false,
            true,
            true,
        )
        .await
        .unwrap();
        let io = ExecIo {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let out = match t {
            Transport::Spdy => tokio::time::timeout(
                SESSION_TIMEOUT,
                spdy::exec(&url, &[spdy_proto()], io, flow_control),
            )
            .await
            .expect("spdy exec timed out"),
            Transport::Ws => run_io(t, &url, io).await,
        }
        .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", d.log()));
        assert_eq!(out.status, ExitStatus::Success, "{t:?}");
        assert_eq!(out.stdout.len(), want_out.len(), "{t:?} fc={flow_control}");
        assert!(out.stdout == want_out.as_bytes(), "{t:?} stdout differs");
        assert!(out.stderr == want_err.as_bytes(), "{t:?} stderr differs");

        // A background child that let go of the output does not hold the session up; one that
        // keeps it open holds it until it closes it (runc relays the output and waits for it,
        // as containerd does), and what it wrote is delivered before the exit status.
        let cases: [(&str, &[u8], Duration); 2] = [
            (
                "sleep 60 >/dev/null 2>&1 & echo parent-done; exit 2",
                b"parent-done\n",
                Duration::from_secs(5),
            ),
            (
                "(sleep 2; echo child-done) & echo parent-done; exit 2",
                b"parent-done\nchild-done\n",
                Duration::from_secs(10),
            ),
        ];
        for (script, want, within) in cases {
            let url = exec_url(
                &mut d,
                &ctr,
                &["sh", "-c", script],
                false,
                false,
                true,
                false,
            )
            .await
            .unwrap();
            let start = Instant::now();
            let out = run_io(
                t,
                &url,
                ExecIo {
                    stdout: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(want),
                "{t:?} {script}"
            );
            assert_eq!(out.status, ExitStatus::Code(2), "{t:?} {script}");
            assert!(
                start.elapsed() < within,
                "{t:?} {script}: took {:?}",
                start.elapsed()
            );
        }
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_kills_the_exec_process_tree() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("tree").await;
    let _cleanup = CleanupOnPanic::new(&d);
    for (t, secs) in [(Transport::Ws, "1011"), (Transport::Spdy, "1012")] {
        for tty in [false, true] {
            // The shell stays the parent (the trailing echo keeps it from exec'ing sleep).
            let script = format!("sleep {secs}; echo after");
            let url = exec_url(
                &mut d,
                &ctr,
                &["sh", "-c", &script],
                tty,
                false,
                true,
                false,
            )
            .await
            .unwrap();
            let s = Session::open(t, &url, false, false, tty).await;
            let needle = format!("sleep {secs}");
            let deadline = Instant::now() + Duration::from_secs(15);
            while live_processes(&mut d, &ctr, &needle).await.len() < 2 {
                assert!(
                    Instant::now() < deadline,
                    "{t:?} tty={tty}: shell and {needle} never showed up"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(s);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let live = live_processes(&mut d, &ctr, &needle).await;
                if live.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{t:?} tty={tty}: still alive after the client left: {live:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_moves_bulk_data_both_ways() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic::new(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("pfbulk", false).await;
    let ctr = d
        .run(
            &pod,
            &pod_cfg,
            "web",
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/www && seq 1 150000 > /tmp/www/big && exec httpd -f -p 8080 -h /tmp/www",
            ],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while d
        .exec(
            &ctr,
            &["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/big"],
            5,
        )
        .await
        .unwrap()
        .exit_code
        != 0
    {
        assert!(Instant::now() < deadline, "httpd not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want: String = (1..=150_000).map(|i| format!("{i}\n")).collect();
    let body = |reply: &[u8]| -> Vec<u8> {
        let i = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP header end");
        reply[i + 4..].to_vec()
    };
    let get = b"GET /big HTTP/1.0\r\n\r\n";

    // Downloads.
    for flow_control in [false, true] {
        let url = port_forward_url(&mut d, &pod, &[]).await;
        let c =
            spdy::SpdyClient::connect(&url, &[crius_streaming::spdy::PORTFORWARD_V1], flow_control)
                .await
                .unwrap();
        let reply =
            tokio::time::timeout(SESSION_TIMEOUT, spdy::port_forward_once(&c, 8080, 1, get))
                .await
                .expect("spdy download timed out")
                .unwrap();
        assert!(
            body(&reply) == want.as_bytes(),
            "spdy fc={flow_control}: body differs ({} bytes)",
            reply.len()
        );
    }
    let url = format!("{}?port=8080", port_forward_url(&mut d, &pod, &[]).await);
    let reply = tokio::time::timeout(
        SESSION_TIMEOUT,
        ws::port_forward_once(&url, &[crius_streaming::ws::V4_BINARY], get),
    )
    .await
    .expect("ws download timed out")
    .unwrap();
    assert!(
        body(&reply) == want.as_bytes(),
        "ws: body differs ({} bytes)",
        reply.len()
    );

    // Upload: a listener in the pod stores what it gets until our half-close.
    let upload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let up = d
        .run(
            &pod,
            &pod_cfg,
            "sink",
            &["sh", "-c", "nc -l -p 9000 > /tmp/up; sleep 300"],
        )
        .await;
    let url = port_forward_url(&mut d, &pod, &[]).await;
    let c = spdy::SpdyClient::connect(&url, &[crius_streaming::spdy::PORTFORWARD_V1], false)
        .await
        .unwrap();
    // nc may not be listening yet: retry the connection until it is accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rid = 10;
    loop {
        let r = tokio::time::timeout(
            SESSION_TIMEOUT,
            spdy::port_forward_once(&c, 9000, rid, &upload),
        )
        .await
        .expect("spdy upload timed out");
        rid += 1;
        match r {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "upload never accepted: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = d.exec(&up, &["wc", "-c", "/tmp/up"], 5).await.unwrap();
        let n: usize = String::from_utf8_lossy(&r.stdout)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if n == upload.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploaded {n} of {} bytes",
            upload.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = d
        .exec(
            &up,
            &[
                "sh",
                "-c",
                "od -An -tu1 -v /tmp/up | tr -s ' ' '\\n' | grep -v '^$' | tail -n 3",
            ],
            20,
        )
        .await
        .unwrap();
    let tail: Vec<u8> = upload[upload.len() - 3..].to_vec();
    let got: Vec<u8> = String::from_utf8_lossy(&r.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(got, tail, "{r:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_validation_and_late_failures() {
    let (mut d, pod, pod_cfg, ctr) = daemon_with_sleeper("valid2").await;
    let _cleanup = CleanupOnPanic::new(&d);

    let r =
        d.rt.attach(cri::AttachRequest {
            container_id: "no-such-container".into(),
            stdout: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r).0, Code::NotFound);
    let r =
        d.rt.attach(cri::AttachRequest {
            container_id: ctr.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(r).0, Code::InvalidArgument, "no stream requested");
    let pf = |pod: &str, port: Vec<i32>| cri::PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port,
    };
    assert_eq!(
        code(d.rt.port_forward(pf("no-such-pod", vec![80])).await).0,
        Code::NotFound
    );
    for bad in [0, -1, 65536] {
        assert_eq!(
            code(d.rt.port_forward(pf(&pod, vec![bad])).await).0,
            Code::InvalidArgument,
            "port {bad}"
        );
    }

    // The process ended by a signal reports 128 + signal.
    for t in TRANSPORTS {
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "kill -9 $$"],
            false,
            false,
            true,
            false,
        )
        .await
        .unwrap();
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(out.status, ExitStatus::Code(137), "{t:?}");
    }

    // A URL issued while the container ran but used after it stopped fails with a message.
    let other = d.run(&pod, &pod_cfg, "short", &["sleep", "300"]).await;
    let urls = [
        exec_url(&mut d, &other, &["echo", "late"], false, false, true, false)
            .await
            .unwrap(),
        exec_url(&mut d, &other, &["echo", "late"], false, false, true, false)
            .await
            .unwrap(),
    ];
    let attach = attach_url(&mut d, &other, false, false, true, false).await;
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: other.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    for (t, url) in TRANSPORTS.into_iter().zip(urls) {
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                ..Default::default()
            },
        )
        .await;
        match out {
            Ok(ExecOutput {
                status: ExitStatus::Error(msg),
                ..
            }) => assert!(msg.contains("not running"), "{t:?}: {msg}"),
            other => panic!("{t:?}: exec into a stopped container gave {other:?}"),
        }
    }
    let out = run_io(
        Transport::Ws,
        &attach,
        ExecIo {
            stdout: true,
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(&out, Ok(ExecOutput { status: ExitStatus::Error(m), .. }) if m.contains("not running")),
        "attach to a stopped container: {out:?}"
    );

    // A stopped pod cannot be port-forwarded to.
    let (pod2, _) = d.run_pod("stopped", true).await;
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod2.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        code(d.rt.port_forward(pf(&pod2, vec![80])).await).0,
        Code::FailedPrecondition
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_execs_and_tty_input() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("many").await;
    let _cleanup = CleanupOnPanic::new(&d);
    let mut urls = Vec::new();
    for i in 0..16 {
        let script = format!("echo out-{i}; echo err-{i} >&2; exit {}", i % 5);
        urls.push((
            i,
            exec_url(
                &mut d,
                &ctr,
                &["sh", "-c", &script],
                false,
                false,
                true,
                true,
            )
            .await
            .unwrap(),
        ));
    }
    let runs = urls.into_iter().map(|(i, url)| async move {
        let t = TRANSPORTS[i % 2];
        let out = run_io(
            t,
            &url,
            ExecIo {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?} #{i}: {e}"));
        (i, out)
    });
    for (i, out) in futures::future::join_all(runs).await {
        assert_eq!(out.stdout, format!("out-{i}\n").as_bytes(), "#{i}");
        assert_eq!(out.stderr, format!("err-{i}\n").as_bytes(), "#{i}");
        assert_eq!(out.status.code(), Some((i % 5) as i32), "#{i}");
    }

    // With a tty, input goes through the terminal (echoed, line-edited) to the process.
    for t in TRANSPORTS {
        let url = exec_url(
            &mut d,
            &ctr,
            &["sh", "-c", "read a; echo got:$a; read b; exit 5"],
            true,
            true,
            true,
            false,
        )
        .await
        .unwrap();
        let mut s = Session::open(t, &url, true, false, true).await;
        s.send_stdin(b"hello\r").await;
        s.read_until("got:hello", SESSION_TIMEOUT).await;
        s.send_stdin(b"bye\r").await;
        drop(s);
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_while_exec_starts_leaves_no_process() {
    let (mut d, _pod, _cfg, ctr) = daemon_with_sleeper("early").await;
    let _cleanup = CleanupOnPanic::new(&d);
    for round in 0..12u32 {
        let t = TRANSPORTS[(round % 2) as usize];
        let url = exec_url(&mut d, &ctr, &["sleep", "1021"], false, false, true, false)
            .await
            .unwrap();
        let s = Session::open(t, &url, false, false, false).await;
        // Leave at varying points of the process start (runc exec takes tens of ms).
        tokio::time::sleep(Duration::from_millis(u64::from(round) * 5)).await;
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let live = live_processes(&mut d, &ctr, "sleep 1021").await;
        if live.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exec'd processes outlived their clients: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}
