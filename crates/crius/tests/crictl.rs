//! End-to-end tests with the real crictl v1.36.0 (kubernetes-sigs/cri-tools, static build; see
//! `shared/tools/cri-tools/README.md`) against the real daemon: port forwarding over both of
//! crictl's transports (SPDY, and SPDY tunnelled in WebSocket), exec and attach over both, and
//! the README's crictl walkthrough run as written.
//!
//! crictl is unpacked from `CRIUS_CRICTL_XZ`, or from `shared/tools/cri-tools/crictl.xz` next to
//! the repository (`CARGO_MANIFEST_DIR/../../../shared/tools/cri-tools`). A missing crictl fails
//! the tests: they are the only check of crius against the client users actually run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Upper bound of any single crictl invocation.
const CRICTL_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound of one forwarded connection (request to EOF).
const CONN_TIMEOUT: Duration = Duration::from_secs(30);

fn crictl_xz() -> PathBuf {
    if let Some(p) = std::env::var_os("CRIUS_CRICTL_XZ") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/cri-tools/crictl.xz")
}

/// crictl unpacked into a test's own directory, pointed at that test's daemon.
struct Crictl {
    bin: PathBuf,
    endpoint: String,
}

impl Crictl {
    fn unpack(d: &Daemon) -> Crictl {
        let xz = crictl_xz();
        assert!(
            xz.exists(),
            "{} not found: set CRIUS_CRICTL_XZ to the crictl.xz of cri-tools v1.36.0",
            xz.display()
        );
        let dir = d.dir.join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("crictl");
        let out = std::fs::File::create(&bin).unwrap();
        let st = std::process::Command::new("xz")
            .arg("-dc")
            .arg(&xz)
            .stdout(out)
            .status()
            .unwrap_or_else(|e| panic!("running xz -dc {}: {e}", xz.display()));
        assert!(st.success(), "xz -dc {} failed: {st}", xz.display());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Crictl {
            bin,
            endpoint: format!("unix://{}", d.socket.display()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("CONTAINER_RUNTIME_ENDPOINT", &self.endpoint)
            .env("IMAGE_SERVICE_ENDPOINT", &self.endpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs crictl (bounded) with `stdin` fed to it, returning whatever it did.
    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(data).await.unwrap();
            drop(w);
        }
        match tokio::time::timeout(CRICTL_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => panic!("crictl {args:?}: {e}"),
            Err(_) => panic!("crictl {args:?} did not finish within {CRICTL_TIMEOUT:?}"),
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None).await
    }

    /// Runs crictl and expects success; returns its stdout.
    async fn ok(&self, d: &Daemon, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.status.success(),
            "crictl {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            d.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// On a failing test, removes every pod through the daemon before the harness kills it, so no
/// container keeps running and nothing stays mounted; the daemon's dir and log are kept.
struct CleanupOnPanic(PathBuf);

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

/// Collects a child's output stream in the background (crictl blocks if nobody drains it).
fn drain<R: AsyncRead + Unpin + Send + 'static>(r: R, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
}

/// A running `crictl port-forward` with the local ports it bound (random, `:REMOTE`).
struct Forward {
    child: Child,
    /// remote port → local port on 127.0.0.1
    local: HashMap<u16, u16>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Forward {
    async fn start(c: &Crictl, transport: &str, pod: &str, remotes: &[u16]) -> Forward {
        let specs: Vec<String> = remotes.iter().map(|r| format!(":{r}")).collect();
        let mut args = vec!["port-forward", "--transport", transport, pod];
        args.extend(specs.iter().map(String::as_str));
        let mut child = c
            .command(&args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn crictl port-forward: {e}"));
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), out.clone());
        drain(child.stderr.take().unwrap(), err.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // "Forwarding from 127.0.0.1:LOCAL -> REMOTE", one per address family and port.
            let local: HashMap<u16, u16> = out
                .lock()
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
                .filter_map(|l| l.split_once(" -> "))
                .filter_map(|(l, r)| Some((r.trim().parse().ok()?, l.trim().parse().ok()?)))
                .collect();
            if remotes.iter().all(|r| local.contains_key(r)) {
                return Forward {
                    child,
                    local,
                    out,
                    err,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "crictl port-forward --transport {transport} exited ({st}):\n{}\n{}",
                    out.lock().unwrap(),
                    err.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "crictl port-forward --transport {transport} never listened:\n{}\n{}",
                out.lock().unwrap(),
                err.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addr(&self, remote: u16) -> String {
        format!("127.0.0.1:{}", self.local[&remote])
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.out.lock().unwrap(),
            self.err.lock().unwrap()
        )
    }
}

/// `GET path` with HTTP/1.0 through a forwarded port; returns the body (bounded in time).
async fn http_get(addr: &str, path: &str) -> Result<Vec<u8>, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| {
                format!(
                    "no HTTP response from {addr}: {:?}",
                    String::from_utf8_lossy(&resp)
                )
            })?;
        let head = String::from_utf8_lossy(&resp[..end]).into_owned();
        if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
            return Err(format!("unexpected response from {addr}: {head}"));
        }
        Ok(resp[end + 4..].to_vec())
    };
    tokio::time::timeout(CONN_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path} via {addr} timed out")))
}

/// What the pod's `/www/big` holds (`seq 1 200000`).
fn big_file() -> Vec<u8> {
    (1..=200_000u32)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The pod's servers: httpd on 8080 (index and a 1.3 MB file), on 9000 a server that says
/// "bye" and closes, on 9001 one that streams until its client leaves and then leaves a
/// marker file `/tmp/left.<pid>`.
const SERVERS: &str =
    "mkdir -p /www && echo hello-from-pod > /www/index.html && seq 1 200000 > /www/big \
    && printf '#!/bin/sh\\necho bye\\n' > /bye \
    && printf '#!/bin/sh\\nyes streaming\\ntouch /tmp/left.$$\\n' > /stream \
    && chmod +x /bye /stream \
    && (nc -ll -p 9000 -e /bye &) && (nc -ll -p 9001 -e /stream &) \
    && exec httpd -f -p 8080 -h /www";

/// A daemon with a pod (own network namespace) running [`SERVERS`], all answering.
async fn daemon_with_servers(name: &str) -> (Daemon, CleanupOnPanic, Crictl, String, String) {
    let mut d = Daemon::start().await;
    let cleanup = CleanupOnPanic(d.socket.clone());
    let crictl = Crictl::unpack(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod(name, false).await;
    let ctr = d
        .run(&pod, &pod_cfg, "servers", &["sh", "-c", SERVERS])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = d
            .exec(
                &ctr,
                &[
                    "sh",
                    "-c",
                    "wget -q -O - http://127.0.0.1:8080/ && nc 127.0.0.1 9000 </dev/null",
                ],
                10,
            )
            .await;
        match r {
            Ok(r) if r.exit_code == 0 && r.stdout == b"hello-from-pod\nbye\n" => break,
            other => assert!(
                Instant::now() < deadline,
                "pod servers not up: {other:?}\n{}",
                d.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (d, cleanup, crictl, pod, ctr)
}

/// How many clients of the streaming server on 9001 have been seen leaving, inside the pod.
async fn left_markers(d: &mut Daemon, ctr: &str) -> usize {
    match d
        .exec(
            ctr,
            &["sh", "-c", "ls /tmp | grep -c '^left\\.' || true"],
            10,
        )
        .await
    {
        Ok(r) => String::from_utf8_lossy(&r.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_left_markers(d: &mut Daemon, ctr: &str, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = left_markers(d, ctr).await;
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the pod-side connection was not closed ({n} of {want} markers)\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The daemon's descriptor count once it is at or below `limit` (or after 15 s).
async fn fds_settle(d: &Daemon, limit: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = open_fds(d.pid());
        if n <= limit || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon's descriptor count once it has not changed for half a second (at most 10 s).
async fn fds_steady(d: &Daemon) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut same) = (open_fds(d.pid()), 0);
    while same < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = open_fds(d.pid());
        same = if n == last { same + 1 } else { 0 };
        last = n;
    }
    last
}

async fn port_forward_scenarios(transport: &str) {
    let (mut d, _cleanup, crictl, pod, ctr) = daemon_with_servers(&format!("pf-{transport}")).await;
    // A warm-up forward so that whatever the daemon keeps after its first one is in the
    // baseline of open descriptors.
    {
        let mut warm = Forward::start(&crictl, transport, &pod, &[8080]).await;
        let body = http_get(&warm.addr(8080), "/").await;
        assert!(
            body.is_ok(),
            "{transport}: warm-up: {body:?}\n{}",
            warm.output()
        );
        warm.child.start_kill().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), warm.child.wait()).await;
    }
    let fds_before = fds_steady(&d).await;
    let fwd = Forward::start(&crictl, transport, &pod, &[8080, 9000, 9001]).await;
    let web = fwd.addr(8080);

    // An HTTP request reaches httpd in the pod.
    let body = http_get(&web, "/")
        .await
        .unwrap_or_else(|e| panic!("{transport}: {e}\n{}\n{}", fwd.output(), d.log()));
    assert_eq!(body, b"hello-from-pod\n", "{transport}");

    // Concurrent connections, each moving 1.3 MB, all intact.
    let want = big_file();
    let gets = (0..8).map(|_| http_get(&web, "/big"));
    for (i, got) in futures::future::join_all(gets)
        .await
        .into_iter()
        .enumerate()
    {
        let got = got.unwrap_or_else(|e| panic!("{transport} #{i}: {e}\n{}", fwd.output()));
        assert!(
            got == want,
            "{transport} #{i}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }

    // The pod's server closes the connection: the client sees EOF after the data, and the
    // forward goes on serving (sequentially and concurrently).
    let bye = fwd.addr(9000);
    let read_bye = |addr: String| async move {
        let fut = async {
            let mut s = TcpStream::connect(&addr).await?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).await?;
            Ok::<_, std::io::Error>(got)
        };
        tokio::time::timeout(CONN_TIMEOUT, fut).await
    };
    for i in 0..3 {
        let got = read_bye(bye.clone()).await;
        assert!(
            matches!(&got, Ok(Ok(b)) if b == b"bye\n"),
            "{transport}: closing server #{i}: {got:?}\n{}",
            fwd.output()
        );
    }
    let many = futures::future::join_all((0..5).map(|_| read_bye(bye.clone()))).await;
    for got in many {
        assert!(
            matches!(&got, Ok(Ok(b)) if b == b"bye\n"),
            "{transport}: concurrent closing server: {got:?}\n{}",
            fwd.output()
        );
    }

    // A client leaves mid-stream: the pod-side connection is closed (the streaming server in
    // the pod sees it and leaves its marker), and the forward still serves.
    assert_eq!(left_markers(&mut d, &ctr).await, 0);
    {
        let mut s = TcpStream::connect(fwd.addr(9001)).await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < buf.len() {
            let n = tokio::time::timeout(CONN_TIMEOUT, s.read(&mut buf[got..]))
                .await
                .unwrap_or_else(|_| panic!("{transport}: stream stalled\n{}", fwd.output()))
                .unwrap();
            assert!(n > 0, "{transport}: stream ended early");
            got += n;
        }
        assert!(buf.starts_with(b"streaming\nstreaming\n"), "{transport}");
    }
    wait_left_markers(&mut d, &ctr, 1, &format!("{transport}: client left")).await;
    let body = http_get(&web, "/").await;
    assert_eq!(
        body.as_deref(),
        Ok(&b"hello-from-pod\n"[..]),
        "{transport}: after a client left\n{}",
        fwd.output()
    );

    // crictl itself goes away in the middle of a stream: the daemon closes the pod side too.
    let mut s = TcpStream::connect(fwd.addr(9001)).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(CONN_TIMEOUT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    let mut fwd = fwd;
    fwd.child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), fwd.child.wait()).await;
    wait_left_markers(&mut d, &ctr, 2, &format!("{transport}: crictl killed")).await;
    drop(s);
    // Every connection and session of the forward is gone from the daemon.
    let fds_after = fds_settle(&d, fds_before).await;
    assert!(
        fds_after <= fds_before,
        "{transport}: daemon holds {fds_after} descriptors, {fds_before} before the forward"
    );

    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket() {
    port_forward_scenarios("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_spdy() {
    port_forward_scenarios("spdy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_attach_over_both_transports() {
    let mut d = Daemon::start().await;
    let _cleanup = CleanupOnPanic(d.socket.clone());
    let crictl = Crictl::unpack(&d);
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("exec", true).await;
    let ctr = d.run(&pod, &pod_cfg, "main", &["sleep", "3000"]).await;

    for t in ["websocket", "spdy"] {
        // stdout and stderr apart; a failing command makes crictl fail and name the code.
        let o = crictl
            .run(&[
                "exec",
                "--transport",
                t,
                &ctr,
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ])
            .await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{t}: {o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n", "{t}");
        assert!(stderr.contains("err\n"), "{t}: {stderr}");
        assert!(stderr.contains("exit code 3"), "{t}: {stderr}");

        // stdin reaches the process and its EOF ends it.
        let o = crictl
            .run_with_stdin(
                &[
                    "exec",
                    "-i",
                    "--transport",
                    t,
                    &ctr,
                    "sh",
                    "-c",
                    "tr a-z A-Z; echo done",
                ],
                Some(b"piped through\n"),
            )
            .await;
        assert!(o.status.success(), "{t}: {o:?}\n{}", d.log());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "PIPED THROUGH\ndone\n",
            "{t}"
        );

        // Attach to a container that reads its stdin once: crictl's input reaches it, its
        // output comes back, and closing the input ends it.
        let mut cfg = container_config(
            &format!("attach-{t}"),
            &image("busybox:latest"),
            &[
                "sh",
                "-c",
                "read l; echo \"got:$l\"; cat; echo eof-seen; exit 4",
            ],
        );
        cfg.stdin = true;
        cfg.stdin_once = true;
        let actr = d.create(&pod, &pod_cfg, cfg).await.unwrap();
        d.start_ctr(&actr).await;
        let o = crictl
            .run_with_stdin(
                &["attach", "-i", "--transport", t, &actr],
                Some(b"hello\nmore\n"),
            )
            .await;
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("got:hello\nmore\neof-seen\n"),
            "{t}: {o:?}\n{}",
            d.log()
        );
        let st = d.wait_exit(&actr, Duration::from_secs(20)).await;
        assert_eq!(st.exit_code, 4, "{t}");
    }

    // A terminal: run crictl under script(1) so its stdin is a pty, as for a user.
    if which("script") {
        for t in ["websocket", "spdy"] {
            let line = format!(
                "{} exec -it --transport {t} {ctr} sh -c 'tty; echo tty-ok'",
                crictl.bin.display()
            );
            let mut cmd = Command::new("script");
            cmd.args(["-qec", &line, "/dev/null"])
                .env("CONTAINER_RUNTIME_ENDPOINT", &crictl.endpoint)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let o = tokio::time::timeout(CRICTL_TIMEOUT, cmd.output())
                .await
                .unwrap_or_else(|_| panic!("{t}: crictl exec -it timed out"))
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains("/dev/pts/") && out.contains("tty-ok"),
                "{t}: {o:?}"
            );
        }
    }
    d.shutdown().await;
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// A free loopback port (bound and released; the walkthrough binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The README's crictl walkthrough, extracted from the README and run by bash as written; only
/// the socket, the log directory and the two local ports are replaced by this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = readme
        .split("## A walkthrough with crictl")
        .nth(1)
        .expect("README has the crictl walkthrough section");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the walkthrough has a sh block");
    for needle in [
        "unix:///run/crius/crius.sock",
        "/tmp/demo-logs",
        "18082",
        "18083",
        "--transport websocket \"$POD\"",
    ] {
        assert!(script.contains(needle), "walkthrough lacks {needle:?}");
    }

    let d = Daemon::start().await;
    let _cleanup = CleanupOnPanic(d.socket.clone());
    let crictl = Crictl::unpack(&d);
    let work = d.dir.join("walkthrough");
    std::fs::create_dir_all(&work).unwrap();
    let script = script
        .replace(
            "unix:///run/crius/crius.sock",
            &format!("unix://{}", d.socket.display()),
        )
        .replace(
            "/tmp/demo-logs",
            &d.dir.join("demo-logs").display().to_string(),
        )
        .replace("18082", &free_port().to_string())
        .replace("18083", &free_port().to_string());
    std::fs::write(work.join("walkthrough.sh"), &script).unwrap();

    let path = format!(
        "{}:{}",
        crictl.bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "walkthrough.sh"])
        .current_dir(&work)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let pgid = child.id().unwrap() as i32;
    let res = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output()).await;
    // Whatever the script left behind in its process group (a port-forward on failure).
    // SAFETY: kill(2) with a negative pid signals the process group we created; no memory is
    // touched.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let o = res
        .unwrap_or_else(|_| panic!("the walkthrough did not finish in 180 s\n{}", d.log()))
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "walkthrough failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}\ndaemon log:\n{}",
        o.status,
        d.log()
    );
    // exec printed the pod's hostname; exec over WebSocket and both port-forwards reached httpd.
    assert!(stdout.lines().any(|l| l == "demo"), "{stdout}");
    assert!(
        stdout.matches("hello-from-pod").count() >= 3,
        "exec and both port-forwards reach the pod:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("hello\n"),
        "crictl logs shows the container's output:\n{stdout}"
    );
    // Everything the walkthrough made, it removed.
    assert_eq!(crictl.ok(&d, &["pods", "-q"]).await.trim(), "");
    assert_eq!(crictl.ok(&d, &["ps", "-aq"]).await.trim(), "");
    d.shutdown().await;
}
