//! Security e2e: what an unprivileged host user, a hostile container or a hostile image can reach
//! through crius' own files. The daemon, runc, the overlay mounts and the registry are real; the
//! "unprivileged user" is `nobody` through `setpriv`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::push;
use common::*;

const NOBODY: &str = "65534";

/// Runs `argv` as uid/gid 65534 with no supplementary groups; returns (success, output).
/// setpriv still holds root's capabilities when it execs its argument (they go at that execve), so the
/// path lookup must happen in a process that is already unprivileged: a shell that execs `argv`.
fn as_nobody(argv: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .args(["/bin/sh", "-c", "exec \"$@\"", "sh"])
        .args(argv)
        .output()
        .expect("run setpriv");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every path under `top` (not following symlinks, not crossing into /proc-like trees).
fn walk(top: &Path, out: &mut Vec<PathBuf>) {
    out.push(top.to_path_buf());
    let Ok(meta) = std::fs::symlink_metadata(top) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(top) else {
        return;
    };
    for e in entries.flatten() {
        walk(&e.path(), out);
    }
}

/// True when "other" can traverse every dir from `/` down to `p`'s parent.
fn reachable_by_others(p: &Path) -> bool {
    p.ancestors().skip(1).all(|a| {
        std::fs::metadata(a)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

async fn wait_for_file_in(d: &mut Daemon, id: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = d.exec(id, &["test", "-e", path], 5).await {
            if r.exit_code == 0 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{path} never appeared in {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find_named(top: &Path, name: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(top, &mut all);
    all.into_iter()
        .filter(|p| p.file_name().map(|n| n == name).unwrap_or(false))
        .collect()
}

/// A container's root process plants a setuid copy of busybox in its own filesystem; an unprivileged
/// host user must not be able to run it (nor the image's own binaries) through the state dir, the
/// writable layer or the image snapshots. Then a walk over root and state finds nothing that other
/// users can read or traverse towards container or image data.
#[tokio::test(flavor = "multi_thread")]
async fn setuid_binary_planted_by_a_container_is_unreachable_from_the_host() {
    let mut d = Daemon::start().await;
    // The harness' temp dir is 0700: open it, so that only crius' own modes stand in the way.
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("suid", false).await;
    let ctr = d
        .run(
            &pod,
            &pod_cfg,
            "planter",
            &[
                "sh",
                "-c",
                "cp /bin/busybox /busybox-suid && chmod 4755 /busybox-suid && touch /planted; sleep 1000",
            ],
        )
        .await;
    wait_for_file_in(&mut d, &ctr, "/planted").await;

    let root = d.dir.join("root");
    let state = d.dir.join("state");
    // Where the planted binary is visible on the host: the container's rootfs mount and its upper dir.
    let mut planted = vec![state
        .join("containers")
        .join(&ctr)
        .join("rootfs/busybox-suid")];
    planted.extend(find_named(&root.join("images"), "busybox-suid"));
    assert!(
        planted.len() >= 2,
        "the planted binary must show in the rootfs and in the writable layer: {planted:?}"
    );
    // The image's own binaries, through the shared snapshots.
    let shipped: Vec<PathBuf> = find_named(&root.join("images/snapshots"), "busybox")
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(!shipped.is_empty(), "no busybox found in the snapshots");

    for p in planted.iter().chain(shipped.iter()) {
        let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(m.is_file(), "{}", p.display());
        let path = p.to_str().unwrap();
        let (ok, out) = as_nobody(&[path, "id"]);
        assert!(!ok, "nobody ran {path}: {out}");
        assert!(
            out.contains("Permission denied"),
            "nobody's exec of {path} must fail on permissions, got: {out}"
        );
        let (ok, out) = as_nobody(&["cat", path]);
        assert!(!ok, "nobody read {path}: {out:.200}");
    }
    // The setuid bit itself is still there (the container got what it asked for): the test is about
    // reachability, not about crius stripping modes inside the container.
    let mode = std::fs::metadata(&planted[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o4000, 0o4000);

    // The walk: anything other users can reach and read, list or traverse is a finding, except the top
    // dirs themselves (0711: the socket's parent must be traversable, and nothing in them is listable).
    let mut all = Vec::new();
    walk(&root, &mut all);
    walk(&state, &mut all);
    let mut open = Vec::new();
    for p in &all {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if m.file_type().is_symlink() || !reachable_by_others(p) {
            continue;
        }
        let mode = m.permissions().mode() & 0o7777;
        let other = mode & 0o007;
        let finding = if m.is_dir() {
            // Listing (r) or writing (w) is never allowed; traversing (x) only for the top dirs.
            other & 0o006 != 0 || (other & 0o001 != 0 && p != &root && p != &state)
        } else {
            other != 0
        };
        if finding {
            open.push(format!("{} {mode:o}", p.display()));
        }
    }
    assert!(
        open.is_empty(),
        "reachable by other users under root/state:\n{}",
        open.join("\n")
    );
    for (top, want) in [(&root, 0o711), (&state, 0o711)] {
        let m = std::fs::metadata(top).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, want, "{}", top.display());
    }
    // Files that hold the spec (env, Secret-backed values) and the metadata store: root only.
    for f in [
        state.join("containers").join(&ctr).join("config.json"),
        root.join("crius.redb"),
    ] {
        let m = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{}", f.display());
    }
    d.shutdown().await;
}

/// An install made by an older crius (everything 0755/0644) is tightened when the daemon starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_install_is_tightened_at_start() {
    let mut d = Daemon::start().await;
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("old", true).await;
    let ctr = d.run(&pod, &pod_cfg, "c", &["sleep", "1000"]).await;
    d.terminate();
    let root = d.dir.join("root");
    let state = d.dir.join("state");
    let spec = state.join("containers").join(&ctr).join("config.json");
    let loosen =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    for p in [
        &root,
        &state,
        &root.join("images"),
        &state.join("containers"),
        &state.join("pods"),
        &state.join("runtime"),
    ] {
        loosen(p, 0o755);
    }
    loosen(&spec, 0o644);
    loosen(&root.join("crius.redb"), 0o644);
    d.spawn().await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o711);
    assert_eq!(mode(&state), 0o711);
    for p in [
        root.join("images"),
        state.join("containers"),
        state.join("pods"),
        state.join("runtime"),
    ] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    assert_eq!(mode(&spec), 0o600);
    assert_eq!(mode(&root.join("crius.redb")), 0o600);
    // The container survived the restart and is still served.
    assert_eq!(
        d.status(&ctr).await.state,
        cri_api::v1::ContainerState::ContainerRunning as i32
    );
    d.shutdown().await;
}

// ---------------------------------------------------------------- decompression bombs

/// A gzip'd layer holding one file of `mib` MiB of zeros (a sparse source, so building it writes
/// only the ~1000x smaller compressed blob).
fn bomb_layer(w: &Path, mib: u64) -> push::TestLayer {
    let src = w.join("bomb-src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("zeros")).unwrap();
    f.set_len(mib << 20).unwrap();
    let tar = "tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C \"$0\" -cf - zeros";
    let out = Command::new("sh")
        .args(["-c", &format!("{tar} | sha256sum")])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar | sha256sum");
    let diff_id = format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );
    let gz = w.join("bomb.tar.gz");
    let st = Command::new("sh")
        .args(["-c", &format!("{tar} | gzip -1 -n > \"$1\"")])
        .arg(&src)
        .arg(&gz)
        .status()
        .unwrap();
    assert!(st.success(), "tar | gzip");
    push::TestLayer {
        digest: push::sha256_file(&gz),
        size: std::fs::metadata(&gz).unwrap().len(),
        path: gz,
        diff_id,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

/// An uncompressed layer of `n` empty files.
fn many_entries_layer(w: &Path, n: usize) -> push::TestLayer {
    let src = w.join("many-src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        std::fs::File::create(src.join(format!("f{i}"))).unwrap();
    }
    let tar = w.join("many.tar");
    let st = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar");
    let d = push::sha256_file(&tar);
    push::TestLayer {
        digest: d.clone(),
        size: std::fs::metadata(&tar).unwrap().len(),
        path: tar,
        diff_id: d,
        media_type: "application/vnd.oci.image.layer.v1.tar",
    }
}

async fn pull_err(d: &mut Daemon, reference: &str) -> tonic::Status {
    d.img
        .pull_image(cri_api::v1::PullImageRequest {
            image: Some(cri_api::v1::ImageSpec {
                image: reference.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("the pull must fail")
}

/// Nothing of a failed layer may stay: no snapshot, no temp file, no blob of it, no image.
async fn assert_nothing_kept(d: &mut Daemon, layer: &push::TestLayer, reference: &str) {
    let images = d.dir.join("root/images");
    for sub in ["snapshots", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(images.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "{sub} not empty after the failed pull: {left:?}"
        );
    }
    let blob = images
        .join("blobs/sha256")
        .join(layer.digest.strip_prefix("sha256:").unwrap());
    assert!(!blob.exists(), "the layer blob was kept");
    let st = d
        .img
        .image_status(cri_api::v1::ImageStatusRequest {
            image: Some(cri_api::v1::ImageSpec {
                image: reference.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none(), "the failed image was recorded");
}

/// A layer of 512 MiB of zeros (about 0.5 MiB gzip'd) against a 64 MiB limit, and a layer of 2,000
/// entries against a limit of 1,000: both pulls fail with ResourceExhausted naming the layer digest
/// and the config key, and keep nothing. Then the same bomb under the default limits on a store with
/// 48 MiB of space: the disk fills, the pull fails with ResourceExhausted, nothing is kept, and the
/// space is free again for the next pull. (One test, so the bomb is built once.)
#[tokio::test(flavor = "multi_thread")]
async fn layer_bombs_and_a_full_disk_fail_the_pull_with_resource_exhausted_and_keep_nothing() {
    let work = tempfile::Builder::new()
        .prefix("crius-bomb-")
        .tempdir_in("/tmp")
        .unwrap();
    let w = work.path();
    let bomb = bomb_layer(w, 512);
    assert!(
        bomb.size < 4 << 20,
        "the bomb should be small: {}",
        bomb.size
    );
    let many = many_entries_layer(w, 2000);
    let repo = push::unique_repo("security-bomb");
    push::push_image(w, &repo, "bytes", &[&bomb]);
    push::push_image(w, &repo, "entries", &[&many]);
    let limits = "max_layer_unpacked_bytes = 67108864\nmax_layer_entries = 1000\n";
    let mut d = Daemon::start_with(Options {
        extra_config: limits.into(),
        ..Default::default()
    })
    .await;
    for (tag, layer, key) in [
        ("bytes", &bomb, "max_layer_unpacked_bytes"),
        ("entries", &many, "max_layer_entries"),
    ] {
        let reference = format!("{}/{repo}:{tag}", registry());
        let e = pull_err(&mut d, &reference).await;
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{tag}: {e:?}");
        assert!(
            e.message().contains(&layer.digest) && e.message().contains(key),
            "{tag}: the error must name the layer digest and `{key}`: {}",
            e.message()
        );
        assert_nothing_kept(&mut d, layer, &reference).await;
    }

    // ENOSPC: default limits, the store moved onto a small tmpfs.
    d.terminate();
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace(limits, "")).unwrap();
    let root = d.dir.join("root");
    let old = d.dir.join("root.old");
    std::fs::rename(&root, &old).unwrap();
    std::fs::create_dir(&root).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m,mode=0711", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let unmount = |root: &Path| {
        let _ = Command::new("umount").arg("-l").arg(root).status();
    };
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", old.display()))
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a");
    d.spawn().await;
    let reference = format!("{}/{repo}:bytes", registry());
    let e = pull_err(&mut d, &reference).await;
    if e.code() != tonic::Code::ResourceExhausted
        || !e.message().contains(&bomb.digest)
        || !e.message().contains("no space")
    {
        d.terminate();
        unmount(&root);
        panic!(
            "want ResourceExhausted (no space) naming {}: {e:?}",
            bomb.digest
        );
    }
    assert_nothing_kept(&mut d, &bomb, &reference).await;
    d.pull(&image("busybox:latest")).await;
    d.cleanup().await;
    d.terminate();
    unmount(&root);
    push::drop_repo(&repo, &[&bomb.digest, &many.digest]);
    let _ = std::fs::remove_dir_all(&d.dir);
}

// ---------------------------------------------------------------- log files

/// A symlink planted where a container's log goes (at create, and again before ReopenContainerLog)
/// must not redirect the monitor's appends (it runs as root) to the symlink's target.
#[tokio::test(flavor = "multi_thread")]
async fn planted_log_symlinks_are_refused_at_create_and_reopen() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("logs", true).await;
    let log_dir = PathBuf::from(&pod_cfg.log_directory);
    let victim = d.dir.join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();

    // At create: `evil/0.log` is a symlink to the victim.
    std::fs::create_dir_all(log_dir.join("evil")).unwrap();
    std::os::unix::fs::symlink(&victim, log_dir.join("evil/0.log")).unwrap();
    let cfg = container_config("evil", &image("busybox:latest"), &["echo", "pwned"]);
    let e = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .expect_err("create must fail");
    assert!(e.message().contains("symlink"), "{e:?}");
    // A symlinked parent dir is refused the same way.
    std::os::unix::fs::symlink(d.dir.join("elsewhere"), log_dir.join("evil2")).unwrap();
    std::fs::create_dir_all(d.dir.join("elsewhere")).unwrap();
    let cfg = container_config("evil2", &image("busybox:latest"), &["echo", "pwned"]);
    let e = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .expect_err("create must fail");
    assert!(e.message().contains("symlink"), "{e:?}");
    assert!(
        std::fs::read_dir(d.dir.join("elsewhere"))
            .unwrap()
            .next()
            .is_none(),
        "a log was created through the symlinked dir"
    );

    // At reopen: the log is "rotated" and a symlink put in its place.
    let ctr = d
        .run(
            &pod,
            &pod_cfg,
            "good",
            &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
        )
        .await;
    let log = log_dir.join("good/0.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "no log output");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::rename(&log, log_dir.join("good/0.log.1")).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let r =
        d.rt.reopen_container_log(cri_api::v1::ReopenContainerLogRequest {
            container_id: ctr.clone(),
        })
        .await;
    assert!(r.is_err(), "reopen through a symlink must fail");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    // A genuine rotation still works.
    std::fs::remove_file(&log).unwrap();
    d.rt.reopen_container_log(cri_api::v1::ReopenContainerLogRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("reopen after a real rotation");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "no log output after reopen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.shutdown().await;
}

// ---------------------------------------------------------------- request fields

/// Hostnames that would inject lines into /etc/hosts and pod names that would inject CNI_ARGS keys
/// or collide in name reservations are refused with InvalidArgument naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn injecting_hostnames_and_pod_names_are_refused() {
    let mut d = Daemon::start().await;
    let base = pod_config("inject", false, &d.dir.join("logs/inject"));
    let mut cases = Vec::new();
    let mut c = base.clone();
    c.hostname = "evil\n10.0.0.1 bank.example".into();
    cases.push((c, "config.hostname"));
    let mut c = base.clone();
    c.metadata.as_mut().unwrap().name = "a;K8S_POD_NAMESPACE=kube-system".into();
    cases.push((c, "config.metadata.name"));
    let mut c = base.clone();
    c.metadata.as_mut().unwrap().namespace = "x_y".into();
    cases.push((c, "config.metadata.namespace"));
    let mut c = base.clone();
    c.metadata.as_mut().unwrap().uid = "u;IgnoreUnknown=0".into();
    cases.push((c, "config.metadata.uid"));
    for (cfg, field) in cases {
        let r =
            d.rt.run_pod_sandbox(cri_api::v1::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await;
        let (c, msg) = code(r);
        assert_eq!(c, tonic::Code::InvalidArgument, "{field}: {msg}");
        assert!(msg.contains(field), "{field}: {msg}");
    }
    let pods =
        d.rt.list_pod_sandbox(cri_api::v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.is_empty(), "a refused pod was created: {pods:?}");
    d.shutdown().await;
}

// ---------------------------------------------------------------- gRPC bounds

/// 12 MiB on stdout and 12 MiB on stderr: the answer is truncated to fit one 16 MiB message (the
/// kubelet's limit) instead of failing to encode.
#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_output_is_truncated_to_one_message() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("execbig", true).await;
    let ctr = d.run(&pod, &pod_cfg, "c", &["sleep", "1000"]).await;
    let ch = crius::client::connect(&d.socket).await.unwrap();
    let mut rt = cri_api::v1::runtime_service_client::RuntimeServiceClient::new(ch)
        .max_decoding_message_size(16 << 20);
    let r = rt
        .exec_sync(cri_api::v1::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "head -c 12582912 /dev/zero; head -c 12582912 /dev/zero >&2".into(),
            ],
            timeout: 60,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync with 24 MiB of output: {e:?}"))
        .into_inner();
    assert_eq!(r.exit_code, 0);
    let total = r.stdout.len() + r.stderr.len();
    assert!(total <= 16 << 20, "{total} bytes");
    assert!(
        total >= (16 << 20) - (64 << 10),
        "truncated too much: {total}"
    );
    let half = (8 << 20) - (64 << 10);
    assert!(
        r.stdout.len() >= half && r.stderr.len() >= half,
        "{} + {}",
        r.stdout.len(),
        r.stderr.len()
    );
    d.shutdown().await;
}

/// Connections beyond the cap wait instead of each costing the daemon buffers and tasks; when one
/// closes, the waiting client is served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let mut d = Daemon::start_with(Options {
        extra_config: "max_grpc_connections = 16\n".into(),
        ..Default::default()
    })
    .await;
    // The harness' own client holds one slot; fill the rest with idle connections.
    let mut idle = Vec::new();
    for _ in 0..15 {
        idle.push(std::os::unix::net::UnixStream::connect(&d.socket).unwrap());
    }
    let socket = d.socket.clone();
    let waiting = tokio::spawn(async move {
        let ch = crius::client::connect(&socket).await.unwrap();
        let mut rt = cri_api::v1::runtime_service_client::RuntimeServiceClient::new(ch);
        rt.version(cri_api::v1::VersionRequest::default())
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "a connection past the cap was served"
    );
    // The existing connection keeps working.
    d.rt.version(cri_api::v1::VersionRequest::default())
        .await
        .expect("the harness' connection is still served");
    idle.pop();
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("served once a slot was free")
        .unwrap()
        .unwrap();
    drop(idle);
    d.shutdown().await;
}

// ---------------------------------------------------------------- pause

/// A root process in a shared-PID pod kills the pause (pid 1 of the pod's PID namespace): the pod
/// turns NotReady within a second (status, list, event) and CreateContainer is refused instead of
/// joining whatever process inherits the pause's pid.
#[tokio::test(flavor = "multi_thread")]
async fn killing_pause_from_inside_makes_the_pod_not_ready_and_refuses_creates() {
    use cri_api::v1 as cri;
    let mut d = Daemon::start_with(Options {
        extra_config: "[feature_gates]\nEventedPLEG = true\n".into(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let mut cfg = pod_config("pausekill", true, &d.dir.join("logs/pausekill"));
    let ns = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    ns.pid = cri::NamespaceMode::Pod as i32;
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let shared = |name: &str| {
        let mut c = container_config(name, &image("busybox:latest"), &["sleep", "1000"]);
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let a = d.create(&pod, &cfg, shared("a")).await.unwrap();
    d.start_ctr(&a).await;
    // The container joined the namespace pinned by the pod (not a path through a bare pid).
    {
        use std::os::unix::fs::MetadataExt;
        let ctr_pid = d.pid_of(&a).await;
        let link = std::fs::read_link(format!("/proc/{ctr_pid}/ns/pid")).unwrap();
        let pin = d.dir.join("state/pods").join(&pod).join("pidns");
        let ino = std::fs::metadata(&pin).unwrap().ino();
        assert_eq!(link.to_string_lossy(), format!("pid:[{ino}]"));
    }
    // The pause keeps no privilege: not root, no capabilities, no_new_privs.
    let info =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pause_pid = info["pid"].as_i64().expect("pause pid in verbose info");
    let status = std::fs::read_to_string(format!("/proc/{pause_pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "65535 65535 65535 65535", "{status}");
    assert_eq!(field("Gid:"), "65535 65535 65535 65535", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let mut events =
        d.rt.get_container_events(cri::GetEventsRequest::default())
            .await
            .unwrap()
            .into_inner();
    // pid 1 in the pod is the pause; the container's root kills it.
    let _ = d.exec(&a, &["kill", "-TERM", "1"], 10).await;
    let killed = Instant::now();
    loop {
        let st =
            d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if st.state == cri::PodSandboxState::SandboxNotready as i32 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "pod still Ready {:?} after its pause was killed",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(listed
        .iter()
        .any(|p| p.id == pod && p.state == cri::PodSandboxState::SandboxNotready as i32));
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = events.message().await.unwrap().unwrap();
            if e.container_id == pod {
                return e;
            }
        }
    })
    .await
    .expect("an event for the pod");
    assert_eq!(
        ev.container_event_type,
        cri::ContainerEventType::ContainerStoppedEvent as i32
    );
    let (c, msg) = code(d.create(&pod, &cfg, shared("b")).await);
    assert_eq!(c, tonic::Code::FailedPrecondition, "{msg}");
    let ctrs =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(ctrs.len(), 1, "no container may have been made: {ctrs:?}");
    d.shutdown().await;
}

/// A container joining another's PID namespace (TARGET, as ephemeral debug containers do) joins it
/// through a pin made from a pidfd-verified fd, never `/proc/<pid>/ns/pid` of a bare pid; when the
/// recorded pid no longer names the target's live process, CreateContainer is refused with
/// FailedPrecondition naming target_id, and nothing is joined or left pinned.
#[tokio::test(flavor = "multi_thread")]
async fn target_pid_namespace_is_joined_through_a_verified_pin() {
    use cri_api::v1 as cri;
    use std::os::unix::fs::MetadataExt;
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, cfg) = d.run_pod("targetpid", true).await;
    let a = d.run(&pod, &cfg, "a", &["sleep", "1000"]).await;
    let targeting = |name: &str, target: &str| {
        let mut c = container_config(name, &image("busybox:latest"), &["sleep", "1000"]);
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Target as i32,
                    target_id: target.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let b = d
        .create(&pod, &cfg, targeting("b", &a))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer b: {e}\n{}", d.log()));
    let b_dir = d.dir.join("state/containers").join(&b);
    // The spec names the pin, not a /proc path of the target's pid; the pin is gone once created.
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b_dir.join("config.json")).unwrap()).unwrap();
    let pid_ns = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "pid")
        .cloned()
        .expect("a pid namespace entry");
    assert_eq!(
        pid_ns["path"].as_str(),
        Some(b_dir.join("target-pidns").to_str().unwrap()),
        "{pid_ns}"
    );
    assert!(
        !b_dir.join("target-pidns").exists(),
        "the pin outlived the create"
    );
    d.start_ctr(&b).await;
    let (pa, pb) = (d.pid_of(&a).await, d.pid_of(&b).await);
    let ns_of = |pid: i64| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_eq!(ns_of(pa), ns_of(pb), "b did not join a's PID namespace");
    assert_ne!(
        std::fs::metadata("/proc/self/ns/pid").unwrap().ino(),
        std::fs::metadata(format!("/proc/{pb}/ns/pid"))
            .unwrap()
            .ino()
    );

    // The target's init dies while crius has not noticed (its monitor is stopped, so the init stays
    // an unreaped zombie and the record still says Running): the pid names no live process of the
    // container, and joining is refused.
    let c = d.run(&pod, &cfg, "c", &["sleep", "1000"]).await;
    let info = d.verbose_info(&c).await;
    let (pc, monitor) = (
        info["pid"].as_i64().unwrap() as i32,
        info["monitorPid"].as_i64().unwrap() as i32,
    );
    // SAFETY: plain kill(2) on processes this test's daemon started.
    unsafe {
        assert_eq!(libc::kill(monitor, libc::SIGSTOP), 0);
        assert_eq!(libc::kill(pc, libc::SIGKILL), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pc}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the target's init did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        d.status(&c).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    let (code_, msg) = code(d.create(&pod, &cfg, targeting("e", &c)).await);
    // SAFETY: as above.
    unsafe { libc::kill(monitor, libc::SIGCONT) };
    assert_eq!(code_, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("target_id"), "{msg}");
    let ctrs =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(
        !ctrs
            .iter()
            .any(|x| x.metadata.as_ref().unwrap().name == "e"),
        "{ctrs:?}"
    );
    let leftovers: Vec<_> = find_named(&d.dir.join("state"), "target-pidns");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    d.shutdown().await;
}

/// The v1 hierarchies mounted here: (mount options, mount point).
fn v1_hierarchies() -> Vec<(Vec<String>, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            if r.next()? != "cgroup" {
                return None;
            }
            let opts = r.nth(1)?.split(',').map(str::to_string).collect();
            Some((opts, PathBuf::from(left.split(' ').nth(4)?)))
        })
        .collect()
}

/// The pause of a pod whose cgroup crius owns (cgroup v1, no cgroup_parent) runs in that cgroup in
/// every v1 resource hierarchy, so the pod's limits hold it too, and without privilege (the pod's
/// run_as_user/run_as_group, no capabilities, no_new_privs); the pod's removal removes the cgroup.
#[tokio::test(flavor = "multi_thread")]
async fn pause_runs_in_the_pods_cgroup_without_privilege() {
    use cri_api::v1 as cri;
    let hierarchies = v1_hierarchies();
    let Some((_, mem_root)) = hierarchies
        .iter()
        .find(|(o, _)| o.iter().any(|x| x == "memory"))
        .cloned()
    else {
        eprintln!("no cgroup v1 memory hierarchy: crius makes no pod cgroup here");
        return;
    };
    let mut d = Daemon::start().await;
    let mut cfg = pod_config("pausecg", true, &d.dir.join("logs/pausecg"));
    {
        let l = cfg.linux.as_mut().unwrap();
        l.cgroup_parent = String::new();
        l.resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        });
        let sc = l.security_context.as_mut().unwrap();
        sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
        sc.run_as_user = Some(cri::Int64Value { value: 4321 });
        sc.run_as_group = Some(cri::Int64Value { value: 4322 });
    }
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", d.log()))
        .into_inner()
        .pod_sandbox_id;
    let info =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pause = info["pid"].as_i64().expect("pause pid in verbose info");
    assert!(pause > 0, "{info}");
    let want = format!("/crius/pod-{pod}");
    let cg = std::fs::read_to_string(format!("/proc/{pause}/cgroup")).unwrap();
    let mut resource_lines = 0;
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.is_empty() || ctrls.starts_with("name=") {
            continue; // cgroup v2 and named hierarchies: crius' own membership cgroup
        }
        resource_lines += 1;
        assert_eq!(path, want, "{l}\n{cg}");
    }
    assert!(resource_lines > 0, "{cg}");
    // The pod's memory limit is the pause's.
    let limit = std::fs::read_to_string(
        mem_root
            .join(want.trim_start_matches('/'))
            .join("memory.limit_in_bytes"),
    )
    .unwrap();
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    let procs = std::fs::read_to_string(
        mem_root
            .join(want.trim_start_matches('/'))
            .join("cgroup.procs"),
    )
    .unwrap();
    assert!(procs.lines().any(|p| p == pause.to_string()), "{procs}");

    let status = std::fs::read_to_string(format!("/proc/{pause}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "4321 4321 4321 4321", "{status}");
    assert_eq!(field("Gid:"), "4322 4322 4322 4322", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    // Its own allow-list seccomp filter (reap, wait for signals, exit), stricter than any profile.
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("Seccomp_filters:"), "1", "{status}");
    assert!(
        field("State:").starts_with('S'),
        "pause must idle in sigsuspend: {status}"
    );

    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    for (_, mp) in &hierarchies {
        let dir = mp.join(want.trim_start_matches('/'));
        assert!(!dir.exists(), "{} outlived the pod", dir.display());
    }
    d.shutdown().await;
}

/// A pod in a cgroup the kubelet made (cgroupfs `cgroup_parent`): its pause runs in a child cgroup
/// crius makes below it, `<parent>/crius-pause-<id>`, in every v1 resource hierarchy, so the pod's
/// limits and accounting cover it; the child goes with the pod and the parent is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn pause_runs_below_the_kubelets_pod_cgroup() {
    use cri_api::v1 as cri;
    let hierarchies: Vec<(Vec<String>, PathBuf)> = v1_hierarchies()
        .into_iter()
        .filter(|(o, _)| {
            o.iter()
                .any(|x| ["memory", "cpu", "pids", "cpuset"].contains(&x.as_str()))
        })
        .collect();
    if hierarchies.is_empty() {
        eprintln!("no cgroup v1 resource hierarchy: crius makes no pause cgroup here");
        return;
    }
    // What the kubelet does before RunPodSandbox: the pod's cgroup in every hierarchy.
    let parent = format!("/crius-e2e-kubelet-{}", std::process::id());
    let mut made = Vec::new();
    for (opts, mp) in &hierarchies {
        let dir = mp.join(parent.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap();
        if opts.iter().any(|o| o == "cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(mp.join(f)).unwrap();
                std::fs::write(dir.join(f), v.trim()).unwrap();
            }
        }
        made.push(dir);
    }
    struct Rm(Vec<PathBuf>);
    impl Drop for Rm {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let _rm = Rm(made.clone());

    let mut d = Daemon::start().await;
    let mut cfg = pod_config("pausekube", true, &d.dir.join("logs/pausekube"));
    {
        let l = cfg.linux.as_mut().unwrap();
        l.cgroup_parent = parent.clone();
        let sc = l.security_context.as_mut().unwrap();
        sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
    }
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", d.log()))
        .into_inner()
        .pod_sandbox_id;
    let info =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pause = info["pid"].as_i64().expect("pause pid in verbose info");
    let want = format!("{parent}/crius-pause-{pod}");
    let cg = std::fs::read_to_string(format!("/proc/{pause}/cgroup")).unwrap();
    let mut checked = 0;
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls
            .split(',')
            .any(|c| ["memory", "cpu", "pids", "cpuset"].contains(&c))
        {
            assert_eq!(path, want, "{l}\n{cg}");
            checked += 1;
        }
    }
    assert_eq!(checked, hierarchies.len(), "{cg}");
    for (_, mp) in &hierarchies {
        let procs =
            std::fs::read_to_string(mp.join(want.trim_start_matches('/')).join("cgroup.procs"))
                .unwrap();
        assert!(procs.lines().any(|p| p == pause.to_string()), "{procs}");
    }

    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    for (_, mp) in &hierarchies {
        let child = mp.join(want.trim_start_matches('/'));
        assert!(!child.exists(), "{} outlived the pod", child.display());
        let p = mp.join(parent.trim_start_matches('/'));
        assert!(p.is_dir(), "the kubelet's cgroup {} must stay", p.display());
    }
    d.shutdown().await;
}
