//! E2E: image volumes (Mount.image / image_sub_path), CDI devices (the CRI field and the cdi.k8s.io/*
//! annotations, from spec dirs the test writes while the daemon runs), UpdatePodSandboxResources on the
//! pod cgroup crius makes, and CheckpointContainer's fail-fast reason. Real daemon, real runc, real
//! overlay mounts, real cgroupfs; images from the local test registry.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use serde_json::Value;
use tonic::Code;

async fn within<F: Future<Output = ()>>(secs: u64, f: F) {
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs}s");
    }
}

/// Runs `cmd` in the container; (exit code, stdout, stderr).
async fn run_in(d: &mut Daemon, ctr: &str, cmd: &[&str]) -> (i32, String, String) {
    let r = d
        .exec(ctr, cmd, 10)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

async fn sh(d: &mut Daemon, ctr: &str, script: &str) -> String {
    let (code, out, err) = run_in(d, ctr, &["sh", "-c", script]).await;
    assert_eq!(code, 0, "{script}: stdout {out:?} stderr {err:?}");
    out
}

fn image_mount(path: &str, image: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: path.to_string(),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        image_sub_path: sub.to_string(),
        ..Default::default()
    }
}

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

/// The options of the mount at `target` as the container sees it (/proc/self/mountinfo).
async fn mount_options(d: &mut Daemon, ctr: &str, target: &str) -> String {
    let info = sh(d, ctr, "cat /proc/self/mountinfo").await;
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .unwrap_or_else(|| panic!("no mount at {target} in:\n{info}"));
    line.split(' ').nth(5).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volume_read_only_sub_path_status_and_removal() {
    within(180, async {
        let mut d = Daemon::start().await;
        let busybox = image("busybox:latest");
        let layered = image("layered:latest");
        d.pull(&busybox).await;
        let layered_id = d.pull(&layered).await;
        let (pod, pod_cfg) = d.run_pod("imgvol", true).await;
        let mut cfg = container_config("vol", &busybox, &["sleep", "300"]);
        cfg.mounts = vec![
            // By reference, whole image.
            image_mount("/vol", &layered, ""),
            // By id, a sub-directory.
            image_mount("/sub", &layered_id, "data"),
            // An absolute symlink in the image resolves inside the image, not on the host.
            image_mount("/linked", &layered, "data/symlink-abs"),
        ];
        let ctr = d
            .create(&pod, &pod_cfg, cfg)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer with image volumes: {e}\n{}", d.log()));
        d.start_ctr(&ctr).await;

        assert_eq!(sh(&mut d, &ctr, "cat /vol/data/keep.txt").await, "keep\n");
        assert_eq!(
            sh(&mut d, &ctr, "cat /vol/data/plain-dir/upper.txt").await,
            "upper\n"
        );
        assert_eq!(sh(&mut d, &ctr, "cat /sub/keep.txt").await, "keep\n");
        assert_eq!(sh(&mut d, &ctr, "cat /linked").await, "keep\n");
        // Whiteouts of the image are honoured in the volume too.
        let (code, _, _) = run_in(&mut d, &ctr, &["test", "-e", "/vol/data/remove-me.txt"]).await;
        assert_ne!(code, 0, "a whited-out file is visible in the image volume");

        // Read-only, nosuid, nodev.
        let (code, _, err) =
            run_in(&mut d, &ctr, &["sh", "-c", "echo x > /vol/data/new.txt"]).await;
        assert_ne!(code, 0, "writing into an image volume succeeded");
        assert!(err.contains("Read-only"), "{err}");
        for target in ["/vol", "/sub", "/linked"] {
            let opts = mount_options(&mut d, &ctr, target).await;
            for want in ["ro", "nosuid", "nodev"] {
                assert!(
                    opts.split(',').any(|o| o == want),
                    "{target} mounted with {opts}, not {want}"
                );
            }
        }

        // ContainerStatus reports the mounts as asked, with what PullImage answered as image_ref.
        let st = d.status(&ctr).await;
        assert_eq!(st.mounts.len(), 3, "{:?}", st.mounts);
        let m0 = st.mounts[0].image.as_ref().expect("mount 0 has its image");
        assert_eq!(m0.image, layered);
        assert_eq!(m0.image_ref, layered_id);
        assert_eq!(st.mounts[1].image.as_ref().unwrap().image, layered_id);
        assert_eq!(st.mounts[1].image.as_ref().unwrap().image_ref, layered_id);
        // Plain fields of the request are echoed too.
        assert_eq!(st.mounts[0].container_path, "/vol");
        assert!(st.mounts[0].host_path.is_empty(), "{:?}", st.mounts[0]);
        assert_eq!(st.mounts[1].image_sub_path, "data");

        // Removing the image while it is mounted behaves as for an image a container runs from: the
        // name goes, the volume keeps its layers until the container does.
        let snaps = snapshots(&d);
        d.img
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: layered_id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveImage of a mounted image: {e}"));
        let gone = d
            .img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: layered.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image;
        assert!(gone.is_none(), "{gone:?}");
        assert_eq!(snapshots(&d), snaps, "layers of a mounted image went");
        assert_eq!(sh(&mut d, &ctr, "cat /vol/data/keep.txt").await, "keep\n");

        // A daemon crash and restart keeps the volume's record (and so its layers) with its container.
        d.kill9();
        d.spawn().await;
        assert_eq!(
            snapshots(&d),
            snaps,
            "recovery dropped a mounted image's layers"
        );
        assert_eq!(sh(&mut d, &ctr, "cat /vol/data/keep.txt").await, "keep\n");
        let st = d.status(&ctr).await;
        assert_eq!(st.mounts[0].image.as_ref().unwrap().image_ref, layered_id);

        d.rt.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        d.rt.remove_container(cri::RemoveContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
        let after = snapshots(&d);
        assert!(
            after.len() < snaps.len(),
            "the removed image's layers outlived the container that mounted it: {after:?}"
        );
        let vols = d.dir.join("state/containers").join(&ctr);
        assert!(!vols.exists(), "{} left behind", vols.display());
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volume_errors_name_the_field() {
    within(120, async {
        let mut d = Daemon::start().await;
        let busybox = image("busybox:latest");
        let layered = image("layered:latest");
        d.pull(&busybox).await;
        d.pull(&layered).await;
        let (pod, pod_cfg) = d.run_pod("imgvol-err", true).await;
        let mk = |m: cri::Mount| {
            let mut c = container_config("bad", &busybox, &["sleep", "10"]);
            c.mounts = vec![m];
            c
        };

        let missing = image("not-pulled:nope");
        let (c, m) = code(
            d.create(&pod, &pod_cfg, mk(image_mount("/v", &missing, "")))
                .await,
        );
        assert_eq!(c, Code::NotFound, "{m}");
        assert!(m.contains(&missing), "{m}");

        for (sub, why) in [
            ("../etc", "traversal"),
            ("data/../../etc", "traversal"),
            ("/data", "absolute"),
        ] {
            let (c, m) = code(
                d.create(&pod, &pod_cfg, mk(image_mount("/v", &layered, sub)))
                    .await,
            );
            assert_eq!(c, Code::InvalidArgument, "{why} {sub}: {m}");
            assert!(m.contains("mounts[0].image_sub_path"), "{m}");
        }
        let (c, m) = code(
            d.create(&pod, &pod_cfg, mk(image_mount("/v", &layered, "data/nope")))
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(
            m.contains("image_sub_path") && m.contains("data/nope"),
            "{m}"
        );

        // A sub-path without an image is a mistake, not something to ignore.
        let mut plain = cri::Mount {
            container_path: "/v".into(),
            host_path: d.dir.display().to_string(),
            ..Default::default()
        };
        plain.image_sub_path = "x".into();
        let (c, m) = code(d.create(&pod, &pod_cfg, mk(plain)).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains("image_sub_path"), "{m}");

        // Failed creates leave no volume mounted and no container behind.
        let ctrs =
            d.rt.list_containers(cri::ListContainersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .containers;
        assert!(ctrs.is_empty(), "{ctrs:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&format!("{}/", d.dir.join("state/containers").display())),
            "a failed create left a mount behind"
        );
        d.shutdown().await;
    })
    .await;
}

const VENDOR_SPEC: &str = r#"cdiVersion: "0.6.0"
kind: vendor.example/dev
containerEdits:
  env: ["VENDOR_SPEC=present"]
devices:
  - name: zero
    containerEdits:
      env: ["ZERO_DEVICE=yes"]
      deviceNodes:
        - path: /dev/vendor-zero
          hostPath: /dev/zero
          permissions: rw
      mounts:
        - hostPath: @PAYLOAD@
          containerPath: /vendor
          options: [ro, rbind]
      hooks:
        - hookName: createRuntime
          path: /bin/sh
          args: [sh, -c, "cat > @HOOKS@/$(date +%s%N)"]
      additionalGids: [4242]
"#;

fn status_info(v: &cri::StatusResponse, key: &str) -> Value {
    serde_json::from_str(
        v.info
            .get(key)
            .unwrap_or_else(|| panic!("verbose Status has no {key}: {:?}", v.info.keys())),
    )
    .unwrap()
}

async fn verbose_status(d: &mut Daemon) -> cri::StatusResponse {
    d.rt.status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_devices_from_field_and_annotation() {
    within(180, async {
        let base = tempfile::Builder::new()
            .prefix("crius-cdi-")
            .tempdir_in("/tmp")
            .unwrap();
        let (low, high) = (base.path().join("etc-cdi"), base.path().join("run-cdi"));
        let (payload, hooks) = (base.path().join("payload"), base.path().join("hooks"));
        for d in [&low, &high, &payload, &hooks] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(payload.join("file"), "from the vendor\n").unwrap();
        let mut d = Daemon::start_with(Options {
            extra_config: format!(
                "cdi_spec_dirs = [\"{}\", \"{}\"]\n",
                low.display(),
                high.display()
            ),
            ..Default::default()
        })
        .await;
        let busybox = image("busybox:latest");
        d.pull(&busybox).await;
        let (pod, pod_cfg) = d.run_pod("cdi", true).await;

        // Nothing is defined yet: the device is unknown, and named.
        let mut by_field = container_config("by-field", &busybox, &["sleep", "300"]);
        by_field.cdi_devices = vec![cri::CdiDevice {
            name: "vendor.example/dev=zero".into(),
        }];
        let (c, m) = code(d.create(&pod, &pod_cfg, by_field.clone()).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains("vendor.example/dev=zero") && m.contains("CDI_devices[0]"), "{m}");

        // The spec appears while the daemon runs (as a DRA driver writes it): it is read.
        let spec = VENDOR_SPEC
            .replace("@PAYLOAD@", &payload.display().to_string())
            .replace("@HOOKS@", &hooks.display().to_string());
        std::fs::write(high.join("vendor.yaml"), &spec).unwrap();
        let a = d
            .create(&pod, &pod_cfg, by_field)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer with a CDI device: {e}\n{}", d.log()));
        d.start_ctr(&a).await;

        let mut by_annotation = container_config("by-annotation", &busybox, &["sleep", "300"]);
        by_annotation.annotations.insert(
            "cdi.k8s.io/e2e".into(),
            "vendor.example/dev=zero".into(),
        );
        let b = d
            .create(&pod, &pod_cfg, by_annotation)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer with a CDI annotation: {e}\n{}", d.log()));
        d.start_ctr(&b).await;

        for ctr in [&a, &b] {
            let out = sh(
                &mut d,
                ctr,
                "test -c /dev/vendor-zero && head -c 3 /dev/vendor-zero | od -An -tx1 | tr -d ' \\n'; echo; \
                 echo $ZERO_DEVICE $VENDOR_SPEC; cat /vendor/file; id -G",
            )
            .await;
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines[0], "000000", "{out}");
            assert_eq!(lines[1], "yes present", "{out}");
            assert_eq!(lines[2], "from the vendor", "{out}");
            assert!(lines[3].split(' ').any(|g| g == "4242"), "{out}");
            let (code, _, _) = run_in(&mut d, ctr, &["sh", "-c", "echo x > /vendor/x"]).await;
            assert_ne!(code, 0, "the vendor mount should be read-only");
        }
        // The createRuntime hook ran once per container, with the container's state on stdin.
        let states: Vec<String> = std::fs::read_dir(&hooks)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(states.len(), 2, "{states:?}");
        for id in [&a, &b] {
            assert!(states.iter().any(|s| s.contains(id.as_str())), "{states:?}");
        }

        // Malformed and unknown names are InvalidArgument naming them.
        for name in ["zero", "vendor.example/dev=missing"] {
            let mut c = container_config("bad", &busybox, &["sleep", "10"]);
            c.annotations
                .insert("cdi.k8s.io/e2e".into(), name.to_string());
            let (code_, m) = code(d.create(&pod, &pod_cfg, c).await);
            assert_eq!(code_, Code::InvalidArgument, "{m}");
            assert!(m.contains(name) && m.contains("cdi.k8s.io/e2e"), "{m}");
        }

        // The same device twice in one directory is ambiguous; a broken spec shows in Status.
        std::fs::write(
            low.join("a.yaml"),
            "cdiVersion: 0.6.0\nkind: other.example/x\ndevices:\n- name: twin\n  containerEdits:\n    env: [A=1]\n",
        )
        .unwrap();
        std::fs::write(
            low.join("b.json"),
            r#"{"cdiVersion":"0.6.0","kind":"other.example/x","devices":[{"name":"twin","containerEdits":{"env":["B=1"]}}]}"#,
        )
        .unwrap();
        std::fs::write(low.join("broken.yaml"), "cdiVersion: 0.6.0\nkind: [nope\n").unwrap();
        let mut c = container_config("twin", &busybox, &["sleep", "10"]);
        c.cdi_devices = vec![cri::CdiDevice {
            name: "other.example/x=twin".into(),
        }];
        let (code_, m) = code(d.create(&pod, &pod_cfg, c).await);
        assert_eq!(code_, Code::InvalidArgument, "{m}");
        assert!(m.contains("ambiguous") && m.contains("other.example/x=twin"), "{m}");

        let st = verbose_status(&mut d).await;
        let cdi = status_info(&st, "cdi");
        let errors = cdi["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["spec"].as_str().unwrap_or("").ends_with("broken.yaml")),
            "{cdi}"
        );
        assert!(
            cdi["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "vendor.example/dev=zero"),
            "{cdi}"
        );
        assert!(
            cdi["conflicts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "other.example/x=twin"),
            "{cdi}"
        );
        d.shutdown().await;
    })
    .await;
}

/// Where the v1 hierarchy holding `controller` is mounted, if there is one.
fn v1_hierarchy(controller: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split(' ');
        (r.next()? == "cgroup" && r.nth(1)?.split(',').any(|c| c == controller))
            .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
    })
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

async fn pod_info(d: &mut Daemon, id: &str) -> Value {
    let r =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&r.info["info"]).unwrap()
}

fn resources(quota: i64, shares: i64, memory: i64) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pod_sandbox_resources_resizes_the_pod_cgroup_crius_owns() {
    within(120, async {
        let mut d = Daemon::start().await;
        let busybox = image("busybox:latest");
        d.pull(&busybox).await;
        let (Some(mem_root), Some(cpu_root)) = (v1_hierarchy("memory"), v1_hierarchy("cpu")) else {
            // cgroup v2: crius makes no pod cgroup; the update is recorded only.
            let (pod, _) = d.run_pod("podres-v2", true).await;
            d.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: pod.clone(),
                overhead: None,
                resources: Some(resources(20_000, 256, 64 << 20)),
            })
            .await
            .unwrap();
            let info = pod_info(&mut d, &pod).await;
            assert_eq!(info["podResources"]["resources"]["cpu_quota"], 20_000);
            d.shutdown().await;
            return;
        };

        // A pod without cgroup_parent: crius makes /crius/pod-<id> and sizes it.
        let mut cfg = pod_config("podres", true, &d.dir.join("logs/podres"));
        {
            let l = cfg.linux.as_mut().unwrap();
            l.cgroup_parent = String::new();
            l.resources = Some(resources(50_000, 512, 256 << 20));
            l.overhead = Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            });
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
        let rel = format!("crius/pod-{pod}");
        let (mem, cpu) = (mem_root.join(&rel), cpu_root.join(&rel));
        assert_eq!(
            read_trim(&mem.join("memory.limit_in_bytes")),
            ((256 << 20) + (16 << 20)).to_string(),
            "resources + overhead"
        );
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
        let info = pod_info(&mut d, &pod).await;
        assert_eq!(info["podResources"]["cgroup"]["owner"], "crius", "{info}");
        assert_eq!(info["podResources"]["cgroup"]["path"], format!("/{rel}"));

        // Its containers live below it.
        let ctr = d.run(&pod, &cfg, "inpod", &["sleep", "300"]).await;
        let pid = d.pid_of(&ctr).await;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cg.lines()
                .any(|l| l.contains("memory") && l.contains(&format!("/{rel}/"))),
            "{cg}"
        );

        // Resize.
        d.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: Some(cri::LinuxContainerResources::default()),
            resources: Some(resources(20_000, 256, 128 << 20)),
        })
        .await
        .unwrap_or_else(|e| panic!("UpdatePodSandboxResources: {e}\n{}", d.log()));
        assert_eq!(
            read_trim(&mem.join("memory.limit_in_bytes")),
            (128u64 << 20).to_string()
        );
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "256");
        let info = pod_info(&mut d, &pod).await;
        let r = &info["podResources"];
        assert_eq!(r["resources"]["cpu_quota"], 20_000, "{info}");
        assert_eq!(r["resources"]["memory_limit_in_bytes"], 128 << 20, "{info}");
        assert_eq!(
            r["cgroup"]["memory.limit_in_bytes"],
            (128u64 << 20).to_string(),
            "{info}"
        );

        // What crius cannot write into its pod cgroup is refused by name, and nothing changes.
        let mut bad = resources(30_000, 256, 128 << 20);
        bad.cpuset_cpus = "0".into();
        let (c, m) = code(
            d.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: pod.clone(),
                overhead: None,
                resources: Some(bad),
            })
            .await,
        );
        assert_eq!(c, Code::Unimplemented, "{m}");
        assert!(m.contains("resources.cpuset_cpus"), "{m}");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "20000");
        let (c, _) = code(
            d.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: "0123456789abcdef".into(),
                overhead: None,
                resources: Some(resources(20_000, 256, 128 << 20)),
            })
            .await,
        );
        assert_eq!(c, Code::NotFound);

        // A pod whose cgroup the kubelet owns: recorded and reported, its cgroup never written.
        let (kpod, _) = d.run_pod("podres-kubelet", true).await;
        d.rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: kpod.clone(),
            overhead: None,
            resources: Some(resources(10_000, 128, 64 << 20)),
        })
        .await
        .unwrap();
        let info = pod_info(&mut d, &kpod).await;
        assert_eq!(info["podResources"]["cgroup"]["owner"], "kubelet", "{info}");
        assert_eq!(
            info["podResources"]["resources"]["cpu_quota"], 10_000,
            "{info}"
        );
        let kparent = mem_root.join("crius-e2e");
        if kparent.exists() {
            assert_ne!(
                read_trim(&kparent.join("memory.limit_in_bytes")),
                (64u64 << 20).to_string(),
                "crius wrote into a cgroup it does not own"
            );
        }

        // Removing the pod removes the cgroup crius made, in every hierarchy.
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
        assert!(!mem.exists(), "{} left behind", mem.display());
        assert!(!cpu.exists(), "{} left behind", cpu.display());
        d.shutdown().await;
    })
    .await;
}

async fn checkpoint_error(d: &mut Daemon) -> (Code, String, Duration) {
    let t = Instant::now();
    let r =
        d.rt.checkpoint_container(cri::CheckpointContainerRequest {
            container_id: "any".into(),
            location: "/tmp/crius-e2e-checkpoint.tar".into(),
            timeout: 30,
        })
        .await;
    let e = r.expect_err("CheckpointContainer cannot succeed in crius");
    (e.code(), e.message().to_string(), t.elapsed())
}

fn checkpoint_row(st: &cri::StatusResponse) -> Value {
    // Verbose Status key "criusFeatures": an object keyed by feature name.
    let row = status_info(st, "criusFeatures")["ContainerCheckpoint"].clone();
    assert!(row.is_object(), "ContainerCheckpoint row");
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_container_fails_fast_with_the_reason() {
    within(120, async {
        // No CRIU where the config says: "not installed", at once.
        let mut d = Daemon::start_with(Options {
            extra_config: "criu_path = \"/nonexistent/crius-e2e/criu\"\n".into(),
            ..Default::default()
        })
        .await;
        let (c, m, took) = checkpoint_error(&mut d).await;
        assert_eq!(c, Code::Unimplemented, "{m}");
        assert!(
            m.contains("CRIU is not installed") && m.contains("/nonexistent/crius-e2e/criu"),
            "{m}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
        let st = verbose_status(&mut d).await;
        let row = checkpoint_row(&st);
        assert!(
            row["detail"].as_str().unwrap().contains("not installed"),
            "{row}"
        );
        assert_eq!(status_info(&st, "criu")["probe"]["state"], "missing");
        d.shutdown().await;

        // The default `criu`: whatever this host has, crius must say what CRIU itself says.
        let mut d = Daemon::start().await;
        let (c, m, took) = checkpoint_error(&mut d).await;
        assert_eq!(c, Code::Unimplemented, "{m}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        let which = std::process::Command::new("sh")
            .args(["-c", "command -v criu"])
            .output()
            .unwrap();
        if !which.status.success() {
            assert!(m.contains("CRIU is not installed"), "{m}");
        } else {
            let check = std::process::Command::new("criu")
                .arg("check")
                .output()
                .unwrap();
            if check.status.success() {
                assert!(m.contains("does not implement checkpointing"), "{m}");
            } else {
                let said = String::from_utf8_lossy(&check.stderr).to_string()
                    + &String::from_utf8_lossy(&check.stdout);
                let first = said
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("");
                // CRIU's message carries source line numbers but no pids or times: stable across runs.
                assert!(
                    m.contains("does not work on this host") && m.contains(first),
                    "crius says {m:?}; criu check says {said:?}"
                );
            }
        }
        let st = verbose_status(&mut d).await;
        let row = checkpoint_row(&st);
        assert_eq!(row["maturity"], "unsupported");
        assert!(m.contains(row["detail"].as_str().unwrap()), "{row} vs {m}");
        d.shutdown().await;
    })
    .await;
}
