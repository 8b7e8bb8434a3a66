//! E2E: a full disk. The daemon's root (image store, writable layers, metadata) is a small tmpfs
//! mounted in the test's own dir. A pull that fills it fails with ResourceExhausted naming the path
//! and keeps nothing of the layer; a container filling its rootfs gets ENOSPC itself; the daemon
//! serves on; once the tmpfs is grown the same pull succeeds. Real registry, runc, overlayfs.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::push::{drop_repo, push_image, sha256_file, unique_repo, TestLayer};
use common::*;
use cri_api::v1 as cri;
use tonic::Code;

/// A gzip'd layer holding one file of `mib` MiB of 'a' (not zeros: nothing may turn it sparse), which
/// compresses about a thousandfold.
fn big_layer(w: &Path, mib: usize) -> TestLayer {
    let src = w.join("big-src");
    std::fs::create_dir_all(&src).unwrap();
    {
        let mut f = std::fs::File::create(src.join("big")).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk).unwrap();
        }
    }
    let tar = w.join("big.tar");
    let st = Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("big")
        .status()
        .unwrap();
    assert!(st.success(), "tar");
    let diff_id = sha256_file(&tar);
    let gz = w.join("big.tar.gz");
    let st = Command::new("gzip")
        .args(["-1", "-n", "-k"])
        .arg(&tar)
        .status()
        .unwrap();
    assert!(st.success(), "gzip");
    std::fs::remove_file(&tar).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    TestLayer {
        digest: sha256_file(&gz),
        size: std::fs::metadata(&gz).unwrap().len(),
        path: gz,
        diff_id,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

fn mount_tmpfs(at: &Path, size: &str, remount: bool) {
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "tmpfs"]);
    if remount {
        cmd.args(["-o", &format!("remount,size={size}")]);
    } else {
        cmd.args(["-o", &format!("size={size},mode=0711")]);
    }
    let st = cmd.arg("tmpfs").arg(at).status().unwrap();
    assert!(st.success(), "mount tmpfs at {}", at.display());
}

fn snapshots(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("images/snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

async fn pull(d: &mut Daemon, reference: &str) -> Result<String, tonic::Status> {
    d.img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: reference.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_pull_and_the_write_not_the_daemon() {
    let work = tempfile::tempdir().unwrap();
    let layer = big_layer(work.path(), 48);
    let repo = unique_repo("enospc");
    let (config_digest, manifest_digest) = push_image(work.path(), &repo, "v1", &[&layer]);
    let big = format!("{}/{repo}:v1", registry());

    let mut d = Daemon::start().await;
    // The root moves onto a 32 MiB tmpfs (the daemon recreates its store there).
    d.terminate();
    let root = d.dir.join("root");
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    mount_tmpfs(&root, "32m", false);
    let result = std::panic::AssertUnwindSafe(async {
        d.spawn().await;
        d.pull(&image("busybox:latest")).await;
        let before = snapshots(&root);

        // The pull: the 48 MiB layer cannot fit.
        let e = pull(&mut d, &big).await.expect_err("pull onto a full disk");
        eprintln!("pull onto a full disk: {:?}: {}", e.code(), e.message());
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(
            e.message().contains(&root.display().to_string()),
            "the error names the path: {e:?}"
        );
        assert_eq!(
            snapshots(&root),
            before,
            "no partial snapshot is left (nor a temporary one)"
        );
        let blobs: Vec<String> = std::fs::read_dir(root.join("images/blobs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !blobs.contains(&layer.digest.trim_start_matches("sha256:").to_string()),
            "the layer's blob is not kept: {blobs:?}"
        );
        let st = d
            .img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: big.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.image.is_none(), "no image record: {st:?}");

        // The daemon serves on: a pod and a container run; the container fills its rootfs and
        // sees ENOSPC itself.
        let (pod, pod_cfg) = d.run_pod("full", true).await;
        let ctr = d.run(&pod, &pod_cfg, "filler", &["sleep", "3600"]).await;
        let r = d
            .exec(
                &ctr,
                &["dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=64"],
                60,
            )
            .await
            .expect("ExecSync runs");
        assert_ne!(r.exit_code, 0, "dd into a full rootfs fails: {r:?}");
        let stderr = String::from_utf8_lossy(&r.stderr);
        eprintln!(
            "dd in the container: exit {}: {}",
            r.exit_code,
            stderr.trim()
        );
        assert!(
            stderr.contains("No space left on device"),
            "the container sees ENOSPC: {stderr}"
        );
        let ok = d.exec(&ctr, &["echo", "still here"], 10).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "still here");
        d.img
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .expect("ImageFsInfo on a full disk");
        let listed =
            d.rt.list_containers(cri::ListContainersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .containers;
        assert_eq!(listed.len(), 1);
        // Still full: the pull fails the same way.
        let e = pull(&mut d, &big).await.expect_err("still full");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

        // Space is back: the same pull succeeds.
        mount_tmpfs(&root, "192m", true);
        let id = pull(&mut d, &big).await.expect("pull once space is back");
        assert_eq!(id, config_digest);
        d.cleanup().await;
    });
    let outcome = futures_catch(result).await;
    if d.pid() != 0 {
        d.terminate();
    }
    let _ = Command::new("umount").arg(&root).status();
    drop_repo(&repo, &[&config_digest, &manifest_digest, &layer.digest]);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    d.shutdown().await;
}

/// Runs a future, catching a panic so the tmpfs is unmounted whatever happens.
async fn futures_catch<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> std::thread::Result<()> {
    use futures::FutureExt;
    f.catch_unwind().await
}
