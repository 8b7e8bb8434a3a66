//! E2E harness: starts the real `crius` daemon with its own root, state and socket, talks CRI gRPC to it,
//! and pulls from the real test registry started by `scripts/start-registries.sh` and filled by
//! `scripts/build-test-images.py`. Nothing is mocked.

#![allow(dead_code)]

pub mod push;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub fn registry() -> String {
    std::env::var("CRIUS_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

pub fn auth_registry() -> String {
    std::env::var("CRIUS_TEST_AUTH_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5001".into())
}

/// A test image reference in the plain registry, e.g. `image("busybox:latest")`.
pub fn image(name: &str) -> String {
    format!("{}/crius-test/{name}", registry())
}

pub fn test_dir() -> PathBuf {
    PathBuf::from(std::env::var("CRIUS_TEST_DIR").unwrap_or_else(|_| "/var/lib/crius-test".into()))
}

/// The image builder's record of what it pushed (ids, digests).
pub fn images_manifest() -> serde_json::Value {
    let p = std::env::var("CRIUS_TEST_IMAGES_MANIFEST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| test_dir().join("images/manifest.json"));
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-test-images.py)", p.display()));
    serde_json::from_str(&text).expect("images manifest JSON")
}

fn bin(name: &str) -> PathBuf {
    let crius = PathBuf::from(env!("CARGO_BIN_EXE_crius"));
    let p = crius.parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the generated config.
    pub extra_config: String,
    /// Use this CNI conf dir (None: an empty dir, i.e. crius' embedded default network).
    pub cni_conf_dir: Option<PathBuf>,
}

pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    /// Extra environment of the daemon process (applied at every `spawn`).
    pub env: Vec<(String, String)>,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let certs = dir.join("certs.d");
        for reg in [registry(), auth_registry()] {
            let d = certs.join(&reg);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("hosts.toml"),
                format!("server = \"http://{reg}\"\n\n[host.\"http://{reg}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
            )
            .unwrap();
        }
        let cni_conf = opts.cni_conf_dir.clone().unwrap_or_else(|| {
            let d = dir.join("net.d");
            std::fs::create_dir_all(&d).unwrap();
            d
        });
        let config = dir.join("crius.toml");
        let text = format!(
            "root = \"{root}\"\nstate = \"{state}\"\nlisten = \"{sock}\"\nregistry_config_dir = \"{certs}\"\ncni_conf_dir = \"{cni}\"\ncni_bin_dir = [\"/usr/lib/cni\", \"/opt/cni/bin\"]\nlog_level = \"info\"\n{extra}\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = dir.join("state/crius.sock").display(),
            certs = certs.display(),
            cni = cni_conf.display(),
            extra = opts.extra_config,
        );
        std::fs::write(&config, text).unwrap();
        let mut d = Daemon {
            socket: dir.join("state/crius.sock"),
            dir,
            config,
            child: None,
            env: Vec::new(),
            rt: RuntimeServiceClient::new(Channel::from_static("http://unused").connect_lazy()),
            img: ImageServiceClient::new(Channel::from_static("http://unused").connect_lazy()),
        };
        d.spawn().await;
        d
    }

    /// Connects to a daemon this harness did not start (one run by systemd inside a test node); `dir`
    /// is where the test keeps its files. Dropping it stops nothing.
    pub async fn attach(dir: PathBuf, socket: PathBuf, config: PathBuf) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(ch) = crius::client::connect(&socket).await {
                let mut rt = RuntimeServiceClient::new(ch.clone());
                if rt.version(cri::VersionRequest::default()).await.is_ok() {
                    return Daemon {
                        dir,
                        socket,
                        config,
                        child: None,
                        env: Vec::new(),
                        rt,
                        img: ImageServiceClient::new(ch),
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "no crius answers on {} after 60s",
                socket.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts (or restarts) the daemon process and connects.
    pub async fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(bin("crius"))
            .arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn crius daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists() {
                if let Ok(ch) = crius::client::connect(&self.socket).await {
                    self.rt = RuntimeServiceClient::new(ch.clone());
                    self.img = ImageServiceClient::new(ch);
                    if self
                        .rt
                        .version(cri::VersionRequest::default())
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("crius daemon exited at start ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "crius daemon did not come up in 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9` the daemon (containers must keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `within` for the daemon process to end by itself; its status if it did.
    pub fn wait_dead(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    pub async fn pull(&mut self, reference: &str) -> String {
        self.img
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: reference.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pull {reference}: {e}\n{}", self.log()))
            .into_inner()
            .image_ref
    }

    /// Runs a pod; `host_network` avoids CNI for tests that do not need it.
    pub async fn run_pod(
        &mut self,
        name: &str,
        host_network: bool,
    ) -> (String, cri::PodSandboxConfig) {
        let cfg = pod_config(name, host_network, &self.dir.join("logs").join(name));
        let id = self
            .rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", self.log()))
            .into_inner()
            .pod_sandbox_id;
        (id, cfg)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_cfg: &cri::PodSandboxConfig,
        cfg: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.to_string(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start_ctr(&mut self, id: &str) {
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {id}: {e}\n{}", self.log()));
    }

    /// Creates and starts a container running `args` (through `sh -c` when `shell`).
    pub async fn run(
        &mut self,
        pod: &str,
        pod_cfg: &cri::PodSandboxConfig,
        name: &str,
        args: &[&str],
    ) -> String {
        let cfg = container_config(name, &image("busybox:latest"), args);
        let id = self
            .create(pod, pod_cfg, cfg)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", self.log()));
        self.start_ctr(&id).await;
        id
    }

    pub async fn status(&mut self, id: &str) -> cri::ContainerStatus {
        self.rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .into_inner()
            .status
            .unwrap()
    }

    /// The verbose ContainerStatus info (crius puts one JSON object under key "info").
    pub async fn verbose_info(&mut self, id: &str) -> serde_json::Value {
        let v = self
            .rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .into_inner();
        serde_json::from_str(&v.info["info"]).expect("verbose info is JSON")
    }

    /// Host pid of the container's init, from the verbose status.
    pub async fn pid_of(&mut self, id: &str) -> i64 {
        self.verbose_info(id).await["pid"]
            .as_i64()
            .expect("pid in verbose info")
    }

    /// Waits until the container has exited; returns its status.
    pub async fn wait_exit(&mut self, id: &str, within: Duration) -> cri::ContainerStatus {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status(id).await;
            if s.state == cri::ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not exit within {within:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Removes every pod (and so every container) through the CRI.
    pub async fn cleanup(&mut self) {
        if let Ok(pods) = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
        {
            for p in pods.into_inner().items {
                let _ = self
                    .rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: p.id.clone(),
                    })
                    .await;
                let _ = self
                    .rt
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id,
                    })
                    .await;
            }
        }
    }

    /// Cleans up and stops the daemon; call at the end of every test.
    pub async fn shutdown(mut self) {
        self.cleanup().await;
        if self.child.is_some() {
            self.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test: kill the daemon and what it started (containers outlive the daemon by design,
        // and a leftover busy loop would slow every later test), but keep the dir with daemon.log.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let root = self.dir.join("state/runtime/runc");
            let ids = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"])
                .output();
            for id in ids
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["kill", "-a", id, "KILL"])
                    .status();
            }
            // Pause processes of pods that share a PID namespace name their pod dir on the command line.
            let _ = Command::new("pkill")
                .arg("-9")
                .arg("-f")
                .arg(format!("crius-pause {}", self.dir.display()))
                .status();
            eprintln!("crius e2e dir kept for inspection: {}", self.dir.display());
        }
    }
}

pub fn pod_config(name: &str, host_network: bool, log_dir: &Path) -> cri::PodSandboxConfig {
    let uid = format!("uid-{name}-{}", std::process::id());
    let mode = if host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    } as i32;
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid,
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/crius-e2e".to_string(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, image: &str, args: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("ctr".to_string(), name.to_string())]),
        ..Default::default()
    }
}

/// Code of a failed call, for asserting on error semantics.
pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    let e = r.expect_err("expected an error");
    (e.code(), e.message().to_string())
}
