//! E2E: the CRI ImageService of the real daemon against the real test registries (plain, basic-auth, a
//! hosts.toml mirror), the `crius image import` CLI, and hostile, corrupted or stalling registries
//! (the last two are built by the tests themselves: their own repositories, a loopback proxy).
//! Every digest and id comes from the image builder's manifest.json, never from this file.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::push::*;
use common::*;
use cri_api::v1 as cri;
use serde_json::Value;
use tonic::Code;

/// Fails the test instead of hanging it when the daemon or the registry stops answering.
async fn within<F: Future<Output = ()>>(secs: u64, f: F) {
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs}s");
    }
}

/// The manifest.json entry of a pushed test image, e.g. `entry("busybox:latest")`.
fn entry(name: &str) -> Value {
    let m = images_manifest();
    let e = m["images"][format!("crius-test/{name}")].clone();
    assert!(
        e.is_object(),
        "crius-test/{name} missing from the images manifest"
    );
    e
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

fn spec(reference: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: reference.to_string(),
        ..Default::default()
    })
}

async fn pull_with(
    d: &mut Daemon,
    reference: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    d.img
        .pull_image(cri::PullImageRequest {
            image: spec(reference),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn image_status(d: &mut Daemon, reference: &str, verbose: bool) -> cri::ImageStatusResponse {
    d.img
        .image_status(cri::ImageStatusRequest {
            image: spec(reference),
            verbose,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {reference}: {e}"))
        .into_inner()
}

async fn status_of(d: &mut Daemon, reference: &str) -> Option<cri::Image> {
    image_status(d, reference, false).await.image
}

async fn list(d: &mut Daemon, filter: Option<&str>) -> Vec<cri::Image> {
    d.img
        .list_images(cri::ListImagesRequest {
            filter: filter.map(|f| cri::ImageFilter { image: spec(f) }),
        })
        .await
        .unwrap_or_else(|e| panic!("ListImages {filter:?}: {e}"))
        .into_inner()
        .images
}

async fn remove(d: &mut Daemon, reference: &str) -> Result<(), tonic::Status> {
    d.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(reference),
        })
        .await
        .map(|_| ())
}

async fn fs_info(d: &mut Daemon) -> cri::ImageFsInfoResponse {
    d.img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap_or_else(|e| panic!("ImageFsInfo: {e}"))
        .into_inner()
}

fn used(u: &cri::FilesystemUsage) -> u64 {
    u.used_bytes.as_ref().map(|v| v.value).unwrap_or(0)
}

/// Layer snapshots in the daemon's image store (in-progress `tmp-*` dirs excluded).
fn snapshots(d: &Daemon) -> Vec<String> {
    let dir = d.dir.join("root/images/snapshots");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("tmp-"))
        .collect();
    v.sort();
    v
}

/// Runs `args` in a new container of `image` in a new host-network pod; returns the container id.
async fn run_on(d: &mut Daemon, pod_name: &str, image: &str, args: &[&str]) -> String {
    let (pod, pod_cfg) = d.run_pod(pod_name, true).await;
    let cfg = container_config(&format!("{pod_name}-ctr"), image, args);
    let id = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer on {image}: {e}\n{}", d.log()));
    d.start_ctr(&id).await;
    id
}

/// ExecSync that must succeed; returns stdout.
async fn sh(d: &mut Daemon, ctr: &str, cmd: &[&str]) -> String {
    let r = d
        .exec(ctr, cmd, 10)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
    assert_eq!(
        r.exit_code,
        0,
        "exec {cmd:?}: exit {} stdout {:?} stderr {:?}",
        r.exit_code,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

fn has_id(images: &[cri::Image], id: &str) -> bool {
    images.iter().any(|i| i.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_reports_ids_digests_size_user_and_config() {
    within(90, async {
        let mut d = Daemon::start().await;
        for (name, want_uid, want_user) in [
            ("busybox:latest", Some(0), ""),
            ("busybox-user:latest", None, "crius"),
        ] {
            let e = entry(name);
            let reference = image(name);
            let id = d.pull(&reference).await;
            assert_eq!(id, s(&e["image_id"]), "{name}: PullImage image_ref");

            let st = image_status(&mut d, &reference, true).await;
            let img = st
                .image
                .unwrap_or_else(|| panic!("{name}: ImageStatus has no image after the pull"));
            assert_eq!(img.id, id, "{name}");
            assert!(
                img.repo_tags.contains(&reference),
                "{name}: repo_tags {:?}",
                img.repo_tags
            );
            let repo = reference
                .rsplit_once(':')
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            let want_digest = format!("{repo}@{}", s(&e["manifest_digest"]));
            assert!(
                img.repo_digests.contains(&want_digest),
                "{name}: repo_digests {:?} lacks {want_digest}",
                img.repo_digests
            );
            let layer_bytes: u64 = e["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["size"].as_u64().unwrap())
                .sum();
            assert!(
                img.size >= layer_bytes,
                "{name}: size {} < layers {layer_bytes}",
                img.size
            );
            assert_eq!(img.uid.as_ref().map(|u| u.value), want_uid, "{name}: uid");
            assert_eq!(img.username, want_user, "{name}: username");

            // Verbose: the image config, as pushed.
            let info = st
                .info
                .get("info")
                .unwrap_or_else(|| panic!("{name}: verbose info {:?}", st.info));
            let info: Value = serde_json::from_str(info)
                .unwrap_or_else(|e| panic!("{name}: info not JSON: {e}: {info}"));
            let text = info.to_string();
            let want = &e["config"];
            for key in ["Env", "Cmd", "Labels", "User", "Entrypoint", "WorkingDir"] {
                if let Some(v) = want.get(key) {
                    assert!(
                        text.contains(&v.to_string()),
                        "{name}: verbose info lacks config {key}={v}: {text}"
                    );
                }
            }
        }
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_digest_and_two_tags_share_one_image() {
    within(90, async {
        let mut d = Daemon::start().await;
        let e = entry("busybox:latest");
        let id = s(&e["image_id"]);
        let by_digest = format!("{}@{}", image("busybox"), s(&e["manifest_digest"]));
        assert_eq!(d.pull(&by_digest).await, id);
        let img = status_of(&mut d, &by_digest)
            .await
            .expect("image by digest");
        assert_eq!(img.id, id);
        assert!(
            img.repo_digests.contains(&by_digest),
            "{:?}",
            img.repo_digests
        );

        assert_eq!(d.pull(&image("busybox:latest")).await, id);
        assert_eq!(d.pull(&image("busybox:1.36")).await, id);
        assert_eq!(
            s(&entry("busybox:1.36")["image_id"]),
            id,
            "manifest: both tags are one image"
        );
        let img = status_of(&mut d, &image("busybox:1.36"))
            .await
            .expect("image by second tag");
        assert_eq!(img.id, id);
        for t in [image("busybox:latest"), image("busybox:1.36")] {
            assert!(
                img.repo_tags.contains(&t),
                "repo_tags {:?} lacks {t}",
                img.repo_tags
            );
        }
        let all = list(&mut d, None).await;
        assert_eq!(
            all.iter().filter(|i| i.id == id).count(),
            1,
            "one record per image: {all:?}"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_hosts_toml_mirror() {
    within(90, async {
        let mut d = Daemon::start().await;
        // The registry name does not resolve: the pull can only succeed through the mirror entry.
        let name = "mirror.invalid:5000";
        let dir = d.dir.join("certs.d").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"http://{name}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                registry()
            ),
        )
        .unwrap();
        let reference = format!("{name}/crius-test/busybox:latest");
        let id = pull_with(&mut d, &reference, None)
            .await
            .unwrap_or_else(|e| panic!("pull via mirror: {e}\n{}", d.log()));
        assert_eq!(id, s(&entry("busybox:latest")["image_id"]));
        let img = status_of(&mut d, &reference).await.expect("mirrored image by its own name");
        assert!(img.repo_tags.contains(&reference), "{:?}", img.repo_tags);

        // Without a hosts entry the same name is unreachable: proves the mirror, not luck, served it.
        let other = "mirror2.invalid:5000/crius-test/busybox:latest";
        let (c, msg) = code(pull_with(&mut d, other, None).await);
        assert_ne!(c, Code::Ok);
        assert!(msg.contains("mirror2.invalid"), "{c:?}: {msg}");
        d.shutdown().await;
    })
    .await;
}

/// A "registry" on loopback that accepts connections and never answers, for `secs` seconds.
fn silent_registry(secs: u64) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        let mut held = Vec::new();
        while std::time::Instant::now() < end {
            match l.accept() {
                Ok((c, _)) => held.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_silent_registry_times_out() {
    within(60, async {
        let mut d = Daemon::start_with(Options {
            extra_config: "pull_stall_timeout_secs = 2\n".into(),
            ..Default::default()
        })
        .await;
        let addr = silent_registry(30);
        let name = "silent.invalid:5000";
        let dir = d.dir.join("certs.d").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!("server = \"http://{addr}\"\n"),
        )
        .unwrap();
        let reference = format!("{name}/crius-test/busybox:latest");
        let t0 = std::time::Instant::now();
        let (c, msg) = code(pull_with(&mut d, &reference, None).await);
        let took = t0.elapsed();
        assert_eq!(c, Code::DeadlineExceeded, "{msg}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(20),
            "stall timeout 2s, pull failed after {took:?}"
        );
        assert!(list(&mut d, None).await.is_empty());
        d.shutdown().await;
    })
    .await;
}

/// A registry front on loopback: relays every request to the real plain registry, except a GET of
/// blob `stall_digest`, for which it sends the headers and the first 64 KiB, then nothing until `secs`
/// have passed. One request per connection (it answers `Connection: close`).
fn stalling_proxy(stall_digest: String, secs: u64) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    std::thread::spawn(move || {
        while std::time::Instant::now() < end {
            match l.accept() {
                Ok((c, _)) => {
                    let dg = stall_digest.clone();
                    std::thread::spawn(move || relay_one(c, &dg, end));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    addr
}

fn relay_one(mut c: std::net::TcpStream, stall_digest: &str, end: std::time::Instant) {
    use std::io::{Read, Write};
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let head_text = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head_text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let path = request_line.split(' ').nth(1).unwrap_or("");
    if request_line.starts_with("GET ") && path.contains(&format!("/blobs/{stall_digest}")) {
        let data = std::fs::read(registry_blob(stall_digest)).unwrap_or_default();
        let resp_head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nDocker-Content-Digest: {stall_digest}\r\n\r\n",
            data.len()
        );
        let _ = c.write_all(resp_head.as_bytes());
        let _ = c.write_all(&data[..data.len().min(64 * 1024)]);
        let _ = c.flush();
        while std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        return;
    }
    let mut fwd = format!("{request_line}\r\n");
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if !lower.starts_with("connection:") && !lower.starts_with("host:") {
            fwd.push_str(l);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str(&format!(
        "Host: {}\r\nConnection: close\r\n\r\n",
        registry()
    ));
    let Ok(mut up) = std::net::TcpStream::connect(registry()) else {
        return;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(10)));
    if up.write_all(fwd.as_bytes()).is_err() {
        return;
    }
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let has_close = String::from_utf8_lossy(&resp[..resp.len().min(4096)])
        .to_ascii_lowercase()
        .contains("\r\nconnection: close");
    if !has_close {
        if let Some(i) = resp.windows(2).position(|w| w == b"\r\n") {
            resp.splice(i + 2..i + 2, b"Connection: close\r\n".iter().copied());
        }
    }
    let _ = c.write_all(&resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_download_that_stalls_times_out_and_leaves_nothing() {
    within(60, async {
        let mut d = Daemon::start_with(Options {
            extra_config: "pull_stall_timeout_secs = 2\n".into(),
            ..Default::default()
        })
        .await;
        let e = entry("busybox:latest");
        let layer = s(&e["layers"][0]["digest"]);
        let addr = stalling_proxy(layer.clone(), 30);
        let name = "stall.invalid:5000";
        let dir = d.dir.join("certs.d").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!("server = \"http://{addr}\"\n"),
        )
        .unwrap();
        let reference = format!("{name}/crius-test/busybox:latest");
        let t0 = std::time::Instant::now();
        let (c, msg) = code(pull_with(&mut d, &reference, None).await);
        let took = t0.elapsed();
        assert_eq!(c, Code::DeadlineExceeded, "{msg}");
        assert!(
            msg.contains(layer.strip_prefix("sha256:").unwrap()),
            "message does not name the stalled layer {layer}: {msg}"
        );
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(20),
            "stall timeout 2s, pull failed after {took:?}"
        );
        assert!(list(&mut d, None).await.is_empty());
        assert_eq!(
            snapshots(&d),
            Vec::<String>::new(),
            "half-unpacked layer kept"
        );
        let tmp = d.dir.join("root/images/tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "partial download left behind: {left:?}");
        // Nothing stays locked: the same layer pulls from the real registry right after.
        assert_eq!(d.pull(&image("busybox:latest")).await, s(&e["image_id"]));
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_basic_auth() {
    within(90, async {
        let mut d = Daemon::start().await;
        let m = images_manifest();
        let reg = s(&m["auth"]["registry"]);
        let reference = format!("{reg}/crius-test/busybox:latest");

        let (c, msg) = code(pull_with(&mut d, &reference, None).await);
        assert!(
            matches!(c, Code::Unauthenticated | Code::PermissionDenied),
            "no credentials: {c:?}: {msg}"
        );
        assert!(
            msg.contains(&reg) || msg.contains("crius-test/busybox"),
            "message names neither registry nor image: {msg}"
        );

        let bad = cri::AuthConfig {
            username: s(&m["auth"]["username"]),
            password: "wrong-password".into(),
            ..Default::default()
        };
        let (c, msg) = code(pull_with(&mut d, &reference, Some(bad)).await);
        assert!(
            matches!(c, Code::Unauthenticated | Code::PermissionDenied),
            "bad password: {c:?}: {msg}"
        );
        assert!(
            !msg.contains("wrong-password"),
            "the password leaked into the error: {msg}"
        );
        assert!(status_of(&mut d, &reference).await.is_none());

        let good = cri::AuthConfig {
            username: s(&m["auth"]["username"]),
            password: s(&m["auth"]["password"]),
            ..Default::default()
        };
        let id = pull_with(&mut d, &reference, Some(good))
            .await
            .unwrap_or_else(|e| panic!("pull with credentials: {e}\n{}", d.log()));
        assert_eq!(id, s(&entry("busybox:latest")["image_id"]));
        assert!(status_of(&mut d, &reference).await.is_some());
        let password = s(&m["auth"]["password"]);
        assert!(
            !d.log().contains(&password),
            "the password reached the daemon log"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_auth_field_and_pull_errors_name_the_reference() {
    within(60, async {
        let mut d = Daemon::start().await;
        let m = images_manifest();
        let reg = s(&m["auth"]["registry"]);

        // AuthConfig.auth: base64 of "user:password", as a docker config.json carries it.
        let out = Command::new("sh")
            .args(["-c", "printf '%s:%s' \"$1\" \"$2\" | base64 -w0", "sh"])
            .arg(s(&m["auth"]["username"]))
            .arg(s(&m["auth"]["password"]))
            .output()
            .expect("run base64");
        let encoded = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!encoded.is_empty());
        let reference = format!("{reg}/crius-test/busybox-user:latest");
        let auth = cri::AuthConfig {
            auth: encoded,
            server_address: reg.clone(),
            ..Default::default()
        };
        let id = pull_with(&mut d, &reference, Some(auth))
            .await
            .unwrap_or_else(|e| panic!("pull with AuthConfig.auth: {e}"));
        assert_eq!(id, s(&entry("busybox-user:latest")["image_id"]));

        for missing in [image("busybox:no-such-tag"), image("no-such-repo:latest")] {
            let (c, msg) = code(pull_with(&mut d, &missing, None).await);
            assert_eq!(c, Code::NotFound, "{missing}: {msg}");
            let shown = missing.rsplit('/').next().unwrap();
            let shown = shown.split(':').next().unwrap();
            assert!(
                msg.contains(shown),
                "{missing}: message does not name it: {msg}"
            );
        }
        for bad in [
            "",
            "Upper/Case:x",
            "busybox:bad tag",
            "busybox@sha256:nothex",
        ] {
            let (c, msg) = code(pull_with(&mut d, bad, None).await);
            assert_eq!(c, Code::InvalidArgument, "{bad:?}: {msg}");
        }
        assert!(
            list(&mut d, None).await.len() == 1,
            "failed pulls must record nothing"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_share_the_work() {
    within(60, async {
        let mut d = Daemon::start().await;
        let e = entry("layered:latest");
        let reference = image("layered:latest");
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut c = d.img.clone();
            let r = reference.clone();
            tasks.push(tokio::spawn(async move {
                c.pull_image(cri::PullImageRequest {
                    image: spec(&r),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().image_ref)
            }));
        }
        for t in tasks {
            let id = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("concurrent pull: {e}"));
            assert_eq!(id, s(&e["image_id"]));
        }
        let all = list(&mut d, None).await;
        assert_eq!(all.len(), 1, "{all:?}");
        let layers = e["layers"].as_array().unwrap().len();
        assert_eq!(
            snapshots(&d).len(),
            layers,
            "one snapshot per layer: {:?}",
            snapshots(&d)
        );
        let tmp = d.dir.join("root/images/tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "in-progress downloads left behind: {left:?}"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_survive_a_daemon_restart() {
    within(60, async {
        let mut d = Daemon::start().await;
        let latest = image("busybox:latest");
        let id = d.pull(&latest).await;
        assert_eq!(d.pull(&image("busybox:1.36")).await, id);
        remove(&mut d, &image("busybox:1.36")).await.unwrap();
        let before = status_of(&mut d, &latest).await.expect("pulled image");
        let status = d.terminate();
        assert!(status.success(), "daemon exit on SIGTERM: {status}");
        d.spawn().await;
        let after = status_of(&mut d, &latest)
            .await
            .expect("image lost across a restart");
        assert_eq!(after, before);
        assert!(
            status_of(&mut d, &image("busybox:1.36")).await.is_none(),
            "a removed tag came back"
        );
        // The layers are usable, not just the record.
        let ctr = run_on(&mut d, "restart", &latest, &["sleep", "300"]).await;
        assert_eq!(
            sh(&mut d, &ctr, &["echo", "still-here"]).await,
            "still-here\n"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layered_image_whiteouts_links_and_modes_inside_a_container() {
    within(120, async {
        let mut d = Daemon::start().await;
        let e = entry("layered:latest");
        let reference = image("layered:latest");
        assert_eq!(d.pull(&reference).await, s(&e["image_id"]));
        let ctr = run_on(&mut d, "layered", &reference, &["sleep", "300"]).await;
        let x = &e["expect"];

        for (path, content) in x["files"].as_object().unwrap() {
            let got = sh(&mut d, &ctr, &["cat", path]).await;
            assert_eq!(got, s(content), "content of {path}");
        }
        for path in x["absent"].as_array().unwrap() {
            let p = s(path);
            let r = d
                .exec(
                    &ctr,
                    &["sh", "-c", "[ -e \"$1\" ] || [ -L \"$1\" ]", "sh", &p],
                    10,
                )
                .await
                .unwrap();
            assert_eq!(
                r.exit_code,
                1,
                "{p} must be absent (stderr {:?})",
                String::from_utf8_lossy(&r.stderr)
            );
        }
        for pair in x["hardlinks"].as_array().unwrap() {
            let a = s(&pair[0]);
            let b = s(&pair[1]);
            let ia = sh(&mut d, &ctr, &["stat", "-c", "%i %h", &a]).await;
            let ib = sh(&mut d, &ctr, &["stat", "-c", "%i %h", &b]).await;
            assert_eq!(ia, ib, "{a} and {b} must be one inode");
            let nlink: u64 = ia.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(nlink >= 2, "{a}: nlink {nlink}");
        }
        for (path, target) in x["symlinks"].as_object().unwrap() {
            let kind = sh(&mut d, &ctr, &["stat", "-c", "%F", path]).await;
            assert_eq!(kind.trim(), "symbolic link", "{path}");
            let got = sh(&mut d, &ctr, &["readlink", path]).await;
            assert_eq!(got.trim_end(), s(target), "target of {path}");
        }
        // Both symlinks resolve inside the container's root.
        assert_eq!(
            sh(
                &mut d,
                &ctr,
                &["cat", "/data/symlink-abs", "/data/symlink-rel"]
            )
            .await,
            "keep\nkeep\n"
        );
        for (path, want) in x["modes"].as_object().unwrap() {
            let got = sh(&mut d, &ctr, &["stat", "-c", "%a %u %g", path]).await;
            let f: Vec<&str> = got.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{path}: stat said {got:?}");
            let mode = u32::from_str_radix(f[0], 8).unwrap();
            let want_mode = u32::from_str_radix(&s(&want["mode"]), 8).unwrap();
            assert_eq!(
                mode, want_mode,
                "{path}: mode {:o} want {want_mode:o}",
                mode
            );
            assert_eq!(
                f[1].parse::<u64>().unwrap(),
                want["uid"].as_u64().unwrap(),
                "{path}: uid"
            );
            assert_eq!(
                f[2].parse::<u64>().unwrap(),
                want["gid"].as_u64().unwrap(),
                "{path}: gid"
            );
        }
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_images_with_and_without_filter() {
    within(90, async {
        let mut d = Daemon::start().await;
        assert!(
            list(&mut d, None).await.is_empty(),
            "a new daemon lists no images"
        );
        let bb = d.pull(&image("busybox:latest")).await;
        let user = d.pull(&image("busybox-user:latest")).await;
        assert_ne!(bb, user);

        let all = list(&mut d, None).await;
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(has_id(&all, &bb) && has_id(&all, &user), "{all:?}");
        let u = all.iter().find(|i| i.id == user).unwrap();
        assert_eq!(u.username, "crius");
        assert!(u.repo_tags.contains(&image("busybox-user:latest")), "{u:?}");

        let only = list(&mut d, Some(&image("busybox-user:latest"))).await;
        assert_eq!(only.len(), 1, "{only:?}");
        assert_eq!(only[0].id, user);
        let only = list(&mut d, Some(&bb)).await;
        assert_eq!(only.len(), 1, "filter by id: {only:?}");
        assert_eq!(only[0].id, bb);
        let by_digest = format!(
            "{}@{}",
            image("busybox-user"),
            s(&entry("busybox-user:latest")["manifest_digest"])
        );
        let only = list(&mut d, Some(&by_digest)).await;
        assert_eq!(only.len(), 1, "filter by digest: {only:?}");
        assert_eq!(only[0].id, user);
        assert!(list(&mut d, Some(&image("busybox:no-such-tag")))
            .await
            .is_empty());
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_image_untags_then_removes_and_unknown_is_fine() {
    within(90, async {
        let mut d = Daemon::start().await;
        let latest = image("busybox:latest");
        let old = image("busybox:1.36");
        let id = d.pull(&latest).await;
        assert_eq!(d.pull(&old).await, id);

        // One of two tags: only the tag goes.
        remove(&mut d, &old)
            .await
            .unwrap_or_else(|e| panic!("RemoveImage {old}: {e}"));
        let img = status_of(&mut d, &latest)
            .await
            .expect("the other tag still resolves");
        assert_eq!(img.id, id);
        assert!(
            !img.repo_tags.contains(&old),
            "{old} still listed: {:?}",
            img.repo_tags
        );
        assert!(img.repo_tags.contains(&latest), "{:?}", img.repo_tags);
        assert!(
            status_of(&mut d, &old).await.is_none(),
            "removed tag still resolves"
        );
        assert!(!snapshots(&d).is_empty(), "untagging must keep the layers");

        // By id: the image goes, and so do its layers.
        remove(&mut d, &id)
            .await
            .unwrap_or_else(|e| panic!("RemoveImage {id}: {e}"));
        assert!(status_of(&mut d, &latest).await.is_none());
        assert!(status_of(&mut d, &id).await.is_none());
        assert!(!has_id(&list(&mut d, None).await, &id));
        assert_eq!(
            snapshots(&d),
            Vec::<String>::new(),
            "layers of a removed image were not collected"
        );

        // Unknown images: RemoveImage is idempotent, ImageStatus answers with no image.
        remove(&mut d, &id)
            .await
            .unwrap_or_else(|e| panic!("second RemoveImage {id}: {e}"));
        remove(&mut d, &image("never-pushed:v0"))
            .await
            .unwrap_or_else(|e| panic!("RemoveImage unknown: {e}"));
        let unknown_id = format!("sha256:{}", "0".repeat(64));
        remove(&mut d, &unknown_id)
            .await
            .unwrap_or_else(|e| panic!("RemoveImage unknown id: {e}"));
        let st = image_status(&mut d, &image("never-pushed:v0"), true).await;
        assert!(st.image.is_none(), "{st:?}");
        assert!(status_of(&mut d, &unknown_id).await.is_none());

        // By repo digest: the whole image goes, tags included.
        let id = d.pull(&latest).await;
        let by_digest = format!(
            "{}@{}",
            image("busybox"),
            s(&entry("busybox:latest")["manifest_digest"])
        );
        remove(&mut d, &by_digest)
            .await
            .unwrap_or_else(|e| panic!("RemoveImage {by_digest}: {e}"));
        assert!(
            status_of(&mut d, &latest).await.is_none(),
            "tag outlived removal by digest"
        );
        assert!(!has_id(&list(&mut d, None).await, &id));
        d.shutdown().await;
    })
    .await;
}

/// Content files in the daemon's blob store.
fn blobs(d: &Daemon) -> Vec<String> {
    let dir = d.dir.join("root/images/blobs/sha256");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_image_keeps_layers_shared_with_another() {
    within(60, async {
        let mut d = Daemon::start().await;
        let bb = entry("busybox:latest");
        let user = entry("busybox-user:latest");
        let shared = s(&bb["layers"][0]["digest"]);
        assert_eq!(
            shared,
            s(&user["layers"][0]["digest"]),
            "manifest: the two images share their layer"
        );
        let bb_id = d.pull(&image("busybox:latest")).await;
        let user_id = d.pull(&image("busybox-user:latest")).await;
        let snaps = snapshots(&d);
        assert_eq!(snaps.len(), 1, "one shared snapshot: {snaps:?}");
        let hex = |dg: &Value| s(dg).trim_start_matches("sha256:").to_string();
        for want in [
            &bb["layers"][0]["digest"],
            &bb["config_digest"],
            &user["config_digest"],
        ] {
            assert!(
                blobs(&d).contains(&hex(want)),
                "blob {want} missing: {:?}",
                blobs(&d)
            );
        }

        remove(&mut d, &bb_id).await.unwrap();
        assert_eq!(
            snapshots(&d),
            snaps,
            "the shared layer went with the first image"
        );
        let left = blobs(&d);
        assert!(
            left.contains(&hex(&bb["layers"][0]["digest"])),
            "shared layer blob collected: {left:?}"
        );
        assert!(
            !left.contains(&hex(&bb["config_digest"])),
            "removed image's config kept: {left:?}"
        );
        assert!(
            !left.contains(&hex(&bb["manifest_digest"])),
            "removed image's manifest kept: {left:?}"
        );
        let ctr = run_on(
            &mut d,
            "shared",
            &image("busybox-user:latest"),
            &["sleep", "300"],
        )
        .await;
        let passwd = sh(&mut d, &ctr, &["cat", "/etc/passwd"]).await;
        assert!(passwd.contains("crius:"), "{passwd}");
        d.cleanup().await;

        remove(&mut d, &user_id).await.unwrap();
        assert_eq!(snapshots(&d), Vec::<String>::new());
        assert_eq!(
            blobs(&d),
            Vec::<String>::new(),
            "blobs left after every image went"
        );
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_image_in_use_keeps_container_and_frees_layers_after_it() {
    within(120, async {
        let mut d = Daemon::start().await;
        // layered's upper layers belong to it alone, so their snapshots are observable.
        let reference = image("layered:latest");
        let id = d.pull(&reference).await;
        let snaps = snapshots(&d);
        let layers = entry("layered:latest")["layers"].as_array().unwrap().len();
        assert_eq!(snaps.len(), layers, "one snapshot per layer: {snaps:?}");
        let ctr = run_on(&mut d, "inuse", &reference, &["sleep", "300"]).await;
        assert_eq!(sh(&mut d, &ctr, &["cat", "/data/keep.txt"]).await, "keep\n");

        remove(&mut d, &id)
            .await
            .unwrap_or_else(|e| panic!("RemoveImage of an image in use: {e}"));
        assert!(status_of(&mut d, &reference).await.is_none());
        assert!(!has_id(&list(&mut d, None).await, &id));
        // The running container still has its root filesystem.
        assert_eq!(sh(&mut d, &ctr, &["cat", "/data/keep.txt"]).await, "keep\n");
        sh(
            &mut d,
            &ctr,
            &["sh", "-c", "echo more > /data/new.txt && cat /data/new.txt"],
        )
        .await;
        let st = d.status(&ctr).await;
        assert_eq!(
            st.state,
            cri::ContainerState::ContainerRunning as i32,
            "{st:?}"
        );
        assert_eq!(
            snapshots(&d),
            snaps,
            "layers of a running container must stay"
        );
        let before = used(&fs_info(&mut d).await.image_filesystems[0]);

        d.rt.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 2,
        })
        .await
        .unwrap_or_else(|e| panic!("StopContainer: {e}"));
        d.rt.remove_container(cri::RemoveContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}"));
        assert_eq!(
            snapshots(&d),
            Vec::<String>::new(),
            "layers of the removed image outlived its last container"
        );
        let after = used(&fs_info(&mut d).await.image_filesystems[0]);
        assert!(after < before, "image fs used bytes {before} -> {after}");
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_fs_info_reports_image_and_container_filesystems() {
    within(90, async {
        let mut d = Daemon::start().await;
        let empty = fs_info(&mut d).await;
        let empty_used = used(&empty.image_filesystems[0]);
        d.pull(&image("busybox:latest")).await;
        let r = fs_info(&mut d).await;
        assert_eq!(r.image_filesystems.len(), 1, "{r:?}");
        assert!(!r.container_filesystems.is_empty(), "{r:?}");
        for u in r
            .image_filesystems
            .iter()
            .chain(r.container_filesystems.iter())
        {
            let mp = u
                .fs_id
                .as_ref()
                .map(|f| f.mountpoint.clone())
                .unwrap_or_default();
            assert!(
                !mp.is_empty() && Path::new(&mp).is_absolute(),
                "mountpoint {mp:?}: {u:?}"
            );
            assert!(u.timestamp > 0, "{u:?}");
            assert!(u.used_bytes.is_some() && u.inodes_used.is_some(), "{u:?}");
        }
        let img = &r.image_filesystems[0];
        // The busybox layer is ~1.4 MB compressed and more unpacked.
        let layer = entry("busybox:latest")["layers"][0]["size"]
            .as_u64()
            .unwrap();
        assert!(
            used(img) >= empty_used + layer,
            "image fs used {} (empty {empty_used}, layer {layer})",
            used(img)
        );
        assert!(img.inodes_used.as_ref().unwrap().value > 0);

        // A container writing 2 MiB shows up in the container filesystem.
        let before = used(&r.container_filesystems[0]);
        let ctr = run_on(
            &mut d,
            "fsinfo",
            &image("busybox:latest"),
            &["sleep", "300"],
        )
        .await;
        sh(
            &mut d,
            &ctr,
            &["dd", "if=/dev/zero", "of=/big", "bs=1024", "count=2048"],
        )
        .await;
        let r = fs_info(&mut d).await;
        let after = used(&r.container_filesystems[0]);
        assert!(
            after >= before + 2 * 1024 * 1024,
            "container fs used {before} -> {after}"
        );
        d.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------- hostile and corrupted content

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_layer_blob_fails_the_pull() {
    within(120, async {
        let repo = unique_repo("corrupt");
        let work = tempfile::Builder::new()
            .prefix("crius-corrupt-")
            .tempdir_in("/tmp")
            .unwrap();
        let w = work.path();

        // Two layers whose content is unique to this run, so their blobs are shared with nothing in
        // the registry. The uncompressed one is the victim: no decompressor can notice the damage,
        // only the digest check.
        let base = make_layer(w, "base", "base.txt", &format!("{repo} base\n"), true);
        let victim = make_layer(
            w,
            "victim",
            "unique.txt",
            &format!("{repo}\n").repeat(64),
            false,
        );
        let (config_digest, manifest_digest) = push_image(w, &repo, "v1", &[&base, &victim]);
        let reference = format!("{}/{repo}:v1", registry());

        // Control: intact, the image pulls (so the failure below is the corruption's doing).
        let mut ok = Daemon::start().await;
        assert_eq!(ok.pull(&reference).await, config_digest);
        ok.shutdown().await;

        // Same length, different bytes (inside unique.txt's data): only the digest can tell.
        let blob = registry_blob(&victim.digest);
        let mut bytes = std::fs::read(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display()));
        assert_eq!(bytes.len() as u64, victim.size);
        for b in &mut bytes[512..600] {
            *b = b'X';
        }
        std::fs::write(&blob, &bytes).unwrap();
        assert_ne!(sha256_file(&blob), victim.digest);

        let mut d = Daemon::start().await;
        let (c, msg) = code(pull_with(&mut d, &reference, None).await);
        let hex = victim.digest.strip_prefix("sha256:").unwrap();
        assert_eq!(c, Code::DataLoss, "corrupted blob: {c:?}: {msg}");
        assert!(
            msg.contains(hex),
            "message does not name the layer digest {}: {msg}",
            victim.digest
        );
        let all = list(&mut d, None).await;
        assert!(
            !has_id(&all, &config_digest),
            "a corrupted image was recorded: {all:?}"
        );
        assert!(status_of(&mut d, &reference).await.is_none());
        // Nothing of the bad blob is kept: neither the blob nor a snapshot made from it.
        let kept = d.dir.join("root/images/blobs/sha256").join(hex);
        assert!(!kept.exists(), "{} kept", kept.display());
        // Snapshot dirs are named by chain id: sha256 of "<base diff id> <victim diff id>".
        let out = Command::new("sh")
            .args(["-c", "printf '%s' \"$1\" | sha256sum", "sh"])
            .arg(format!("{} {}", base.diff_id, victim.diff_id))
            .output()
            .expect("run sha256sum");
        let victim_chain = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            !snapshots(&d).contains(&victim_chain),
            "a snapshot of the corrupted layer was kept: {:?}",
            snapshots(&d)
        );
        d.shutdown().await;

        drop_repo(
            &repo,
            &[
                &base.digest,
                &victim.digest,
                &config_digest,
                &manifest_digest,
            ],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_pull_after_the_tag_moved_moves_the_tag() {
    within(60, async {
        let repo = unique_repo("retag");
        let work = tempfile::Builder::new()
            .prefix("crius-retag-")
            .tempdir_in("/tmp")
            .unwrap();
        let w = work.path();
        let one = make_layer(w, "one", "unique.txt", &format!("{repo} one\n"), true);
        let two = make_layer(w, "two", "unique.txt", &format!("{repo} two\n"), true);
        let (a, a_manifest) = push_image(w, &repo, "v1", &[&one]);
        let reference = format!("{}/{repo}:v1", registry());
        let mut d = Daemon::start().await;
        assert_eq!(d.pull(&reference).await, a);

        // The registry's tag now names another image.
        let (b, b_manifest) = push_image(w, &repo, "v1", &[&two]);
        assert_ne!(a, b);
        assert_eq!(d.pull(&reference).await, b);
        let now = status_of(&mut d, &reference).await.expect("tag resolves");
        assert_eq!(now.id, b, "the tag still names the old image");
        let old = status_of(&mut d, &a)
            .await
            .expect("the old image stays until removed");
        assert!(
            !old.repo_tags.contains(&reference),
            "two images hold one tag: {:?}",
            old.repo_tags
        );
        let all = list(&mut d, None).await;
        let holders = all
            .iter()
            .filter(|i| i.repo_tags.contains(&reference))
            .count();
        assert_eq!(holders, 1, "{all:?}");
        // The untagged old image can still be removed by id, leaving the new one intact.
        remove(&mut d, &a).await.unwrap();
        assert!(status_of(&mut d, &a).await.is_none());
        assert_eq!(
            status_of(&mut d, &reference).await.map(|i| i.id),
            Some(b.clone())
        );
        d.shutdown().await;
        drop_repo(
            &repo,
            &[&one.digest, &two.digest, &a, &b, &a_manifest, &b_manifest],
        );
    })
    .await;
}

/// Removes the host files an escape would create, pulls `name`, and asserts none of them appeared.
async fn evil_pull(d: &mut Daemon, name: &str) -> Result<String, tonic::Status> {
    let e = entry(name);
    let markers: Vec<PathBuf> = e["escape_markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| PathBuf::from(s(m)))
        .collect();
    for m in &markers {
        let _ = std::fs::remove_file(m);
        let _ = std::fs::remove_dir_all(m);
    }
    let r = pull_with(d, &image(name), None).await;
    for m in &markers {
        assert!(
            std::fs::symlink_metadata(m).is_err(),
            "{name}: escape marker {} exists after the pull ({r:?})",
            m.display()
        );
    }
    r
}

/// The pull must fail naming the hostile entry, and leave no image behind.
async fn assert_rejected(
    d: &mut Daemon,
    name: &str,
    r: Result<String, tonic::Status>,
    entry_names: &[&str],
) {
    let (c, msg) = code(r);
    assert_ne!(c, Code::Ok);
    assert!(
        entry_names.iter().any(|n| msg.contains(n)),
        "{name}: error does not name the entry ({entry_names:?}): {c:?}: {msg}"
    );
    assert!(
        status_of(d, &image(name)).await.is_none(),
        "{name}: a rejected image was recorded"
    );
    assert!(!has_id(&list(d, None).await, &s(&entry(name)["image_id"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_traversal_layer_is_rejected() {
    within(60, async {
        let mut d = Daemon::start().await;
        let name = "evil-traversal:latest";
        let r = evil_pull(&mut d, name).await;
        assert_rejected(&mut d, name, r, &["../tmp/crius-evil-traversal"]).await;
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_absolute_path_layer_is_rejected() {
    within(60, async {
        let mut d = Daemon::start().await;
        let name = "evil-abs:latest";
        let r = evil_pull(&mut d, name).await;
        assert_rejected(&mut d, name, r, &["/tmp/crius-evil-abs"]).await;
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_hardlink_layer_is_rejected_and_host_file_untouched() {
    within(60, async {
        use std::os::unix::fs::MetadataExt;
        let mut d = Daemon::start().await;
        let name = "evil-hardlink:latest";
        // The hard link names an existing host file; it must keep its content and its single link.
        let target = PathBuf::from(s(&entry(name)["protected_target"]));
        let content = b"protected host file\n";
        std::fs::write(&target, content).unwrap();
        let r = evil_pull(&mut d, name).await;
        let after = std::fs::read(&target).unwrap();
        let nlink = std::fs::metadata(&target).unwrap().nlink();
        let _ = std::fs::remove_file(&target);
        assert_eq!(after, content, "{} was written through", target.display());
        assert_eq!(nlink, 1, "{} gained a link", target.display());
        assert_rejected(&mut d, name, r, &["\"link\"", "crius-evil-hardlink-target"]).await;
        d.shutdown().await;
    })
    .await;
}

/// A symlink to a host directory in one layer, then files written "through" it in the next. crius
/// unpacks every layer into its own snapshot, where the second layer's `escape/` is a plain
/// directory, so the pull may succeed; what must hold is that the files stay inside the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_symlink_layers_cannot_write_outside_the_store() {
    within(60, async {
        let mut d = Daemon::start().await;
        let name = "evil-symlink:latest";
        let entries = [
            "escape/crius-evil-symlink",
            "escape-rel/crius-evil-symlink-rel",
        ];
        match evil_pull(&mut d, name).await {
            Ok(id) => {
                assert_eq!(id, s(&entry(name)["image_id"]));
                let snaps = d.dir.join("root/images/snapshots");
                for e in entries {
                    let inside: Vec<PathBuf> = snapshots(&d)
                        .iter()
                        .map(|sn| snaps.join(sn).join("fs").join(e))
                        .filter(|p| {
                            std::fs::symlink_metadata(p)
                                .map(|m| m.is_file())
                                .unwrap_or(false)
                        })
                        .collect();
                    assert_eq!(
                        inside.len(),
                        1,
                        "{e}: expected one regular file inside a snapshot, found {inside:?}"
                    );
                }
            }
            Err(st) => assert_rejected(&mut d, name, Err(st), &entries).await,
        }
        d.shutdown().await;
    })
    .await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_index_picks_host_platform() {
    within(90, async {
        let mut d = Daemon::start().await;
        for name in ["multiarch:latest", "multiarch-docker:latest"] {
            let e = entry(name);
            let host = &e["platforms"]["linux/amd64"];
            assert!(
                host.is_object(),
                "{name}: manifest has no linux/amd64 platform"
            );
            let reference = image(name);
            let id = d.pull(&reference).await;
            assert_eq!(
                id,
                s(&host["image_id"]),
                "{name}: pulled the wrong platform"
            );
            let img = status_of(&mut d, &reference)
                .await
                .expect("index image status");
            assert_eq!(img.id, id);
            assert!(
                img.repo_tags.contains(&reference),
                "{name}: {:?}",
                img.repo_tags
            );
            let repo = image(name.split(':').next().unwrap());
            let index = format!("{repo}@{}", s(&e["manifest_digest"]));
            // The repo digest is what the tag points to (the index), so `name@digest` pulls the same.
            assert!(
                img.repo_digests.contains(&index),
                "{name}: repo_digests {:?} lack the index digest {index}",
                img.repo_digests
            );
            assert_eq!(d.pull(&index).await, id, "{name}: pull by index digest");
            // The platform manifest's own digest names the same image too.
            let platform = format!("{repo}@{}", s(&e["platform_manifest_digest"]));
            assert_eq!(
                d.pull(&platform).await,
                id,
                "{name}: pull by platform manifest digest"
            );
            assert_eq!(
                list(&mut d, None)
                    .await
                    .iter()
                    .filter(|i| i.id == id)
                    .count(),
                1
            );
        }
        d.shutdown().await;
    })
    .await;
}

fn crius_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crius"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_docker_save_and_oci_layout_archives() {
    within(120, async {
        let mut d = Daemon::start().await;
        let m = images_manifest();
        for kind in ["docker-save", "oci-layout"] {
            let a = &m["archives"][kind];
            let path = s(&a["path"]);
            let id = s(&a["image_id"]);
            let reference = s(&a["reference"]);
            let sock = d.socket.clone();
            let out = tokio::task::spawn_blocking(move || {
                Command::new(crius_bin())
                    .args(["image", "import", "--socket"])
                    .arg(&sock)
                    .arg(&path)
                    .output()
                    .expect("run crius image import")
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{kind}: crius image import failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains(&reference),
                "{kind}: import printed {stdout:?}, want {reference}"
            );
            assert!(
                stdout.contains(&id),
                "{kind}: import printed {stdout:?}, want {id}"
            );

            let all = list(&mut d, None).await;
            let img = all
                .iter()
                .find(|i| i.id == id)
                .unwrap_or_else(|| panic!("{kind}: {id} not listed after import: {all:?}"));
            assert!(
                img.repo_tags.iter().any(|t| t.ends_with(&reference)),
                "{kind}: repo_tags {:?} lack {reference}",
                img.repo_tags
            );
            let by_ref = status_of(&mut d, &reference)
                .await
                .unwrap_or_else(|| panic!("{kind}: {reference} does not resolve"));
            assert_eq!(by_ref.id, id);
            assert!(by_ref.size > 0, "{kind}: size {}", by_ref.size);

            // Importing again is idempotent: same id, still one record.
            let sock = d.socket.clone();
            let path = s(&a["path"]);
            let again = tokio::task::spawn_blocking(move || {
                Command::new(crius_bin())
                    .args(["image", "import", "--socket"])
                    .arg(&sock)
                    .arg(&path)
                    .output()
                    .expect("run crius image import")
            })
            .await
            .unwrap();
            assert!(
                again.status.success() && String::from_utf8_lossy(&again.stdout).contains(&id),
                "{kind}: second import: {} {}{}",
                again.status,
                String::from_utf8_lossy(&again.stdout),
                String::from_utf8_lossy(&again.stderr)
            );
            let n = list(&mut d, None)
                .await
                .iter()
                .filter(|i| i.id == id)
                .count();
            assert_eq!(n, 1, "{kind}: records after a second import");
        }
        // The imported layers are real: a container runs on the imported image.
        let reference = s(&m["archives"]["docker-save"]["reference"]);
        let ctr = run_on(&mut d, "imported", &reference, &["sleep", "300"]).await;
        assert_eq!(
            sh(&mut d, &ctr, &["echo", "imported-ok"]).await,
            "imported-ok\n"
        );

        // A file that is not an image archive fails, naming it.
        let bogus = d.dir.join("not-an-image.tar");
        std::fs::write(&bogus, b"this is not a tarball").unwrap();
        let out = Command::new(crius_bin())
            .args(["image", "import", "--socket"])
            .arg(&d.socket)
            .arg(&bogus)
            .output()
            .expect("run crius image import");
        assert!(!out.status.success(), "importing garbage succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not-an-image.tar"),
            "error does not name the file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.shutdown().await;
    })
    .await;
}

/// An OCI image whose only layer is an uncompressed tar: its digest, diff id and chain id coincide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_oci_image_with_one_uncompressed_layer() {
    within(30, async {
        let mut d = Daemon::start().await;
        let e = entry("busybox-oci:latest");
        let reference = image("busybox-oci:latest");
        let id = pull_with(&mut d, &reference, None)
            .await
            .unwrap_or_else(|st| panic!("pull {reference}: {st}"));
        assert_eq!(id, s(&e["image_id"]));
        let ctr = run_on(&mut d, "ocilayer", &reference, &["sleep", "300"]).await;
        assert_eq!(sh(&mut d, &ctr, &["echo", "oci-ok"]).await, "oci-ok\n");
        d.shutdown().await;
    })
    .await;
}
