//! Unit tests of the pod and container lifecycles that run without root: the real services
//! (`pod::Pods`, `container::Containers`, the `runtime::Runtime` facade, the store, the state machines,
//! name reservations, events) driven through test doubles of the seams (`crate::seams`): an OCI
//! runtime whose "containers" are entries in a table, a pod network that can be told to fail, and an
//! image store that hands out one image and makes plain directories as root filesystems.
//!
//! RunPodSandbox runs for real too, with its namespaces and /dev/shm from a double of
//! `pod::platform::PodPlatform` (paths under the test's dir). What stays root-only and is covered by
//! the e2e tests instead: the pause process (pods that share a PID namespace; the tests' pods do not)
//! and the pod cgroup (made only under crius' own default parent; the tests' pods name a kubelet-style
//! parent), and everything the real seams do.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cri_api::v1 as cri;
use crius_image::{Image, ImageError, LowerMapper};
use crius_network::{NetworkError, NetworkStatus, PodNetwork, PodNetworkStatus};
use crius_oci::{
    ContainerState, ExitInfo, Handler, HandlerKind, HandlerStatus, MonitorConfig, MonitorHandle,
    OciError,
};
use prost::Message;
use tokio::sync::watch;

use crate::container::CtrState;
use crate::pod::{PodState, SandboxRecord};
use crate::runtime::Runtime;
use crate::seams::{Images, Oci, PodNet};
use crate::shared::Shared;

const IMAGE: &str = "example.test/busybox:latest";
const IMAGE_ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// One container as the fake runtime knows it.
struct FakeCtr {
    status: &'static str,
    monitor_pid: i32,
}

#[derive(Default)]
struct OciState {
    containers: HashMap<String, FakeCtr>,
    /// Monitor pid → sender of its exit.
    monitors: HashMap<i32, watch::Sender<bool>>,
    /// Senders of a daemon that died: its waiters never hear of an exit.
    dead: Vec<watch::Sender<bool>>,
    /// Container id → its exit as the monitor records it.
    exits: HashMap<String, ExitInfo>,
    next_pid: i32,
    /// Every call, as "op id".
    calls: Vec<String>,
}

/// The OCI runtime double: `create` makes a table entry and a "monitor" whose exit is a watch
/// channel; `kill` ends the container with 128+signal; the knobs below script failures and races.
#[derive(Default)]
struct FakeOci {
    state: Mutex<OciState>,
    /// `create` fails (the runtime refused the spec).
    fail_create: std::sync::atomic::AtomicBool,
    /// The container exits with this code the moment it starts, and `start` returns only after the
    /// exit collector has read the exit: the race of a container that exits within a millisecond.
    exit_on_start: Mutex<Option<i32>>,
    /// Told when the exit collector reads an exit.
    exit_read: tokio::sync::Notify,
}

impl FakeOci {
    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn call(&self, what: String) {
        self.state.lock().unwrap().calls.push(what);
    }

    /// The container's process ends with `code`: the monitor records it and exits.
    fn exit(&self, id: &str, code: i32) {
        let mut st = self.state.lock().unwrap();
        let Some(c) = st.containers.get_mut(id) else {
            return;
        };
        if c.status == "stopped" {
            return;
        }
        c.status = "stopped";
        let pid = c.monitor_pid;
        st.exits.insert(
            id.to_string(),
            ExitInfo {
                exit_code: code,
                signal: None,
                finished_at_ns: crate::shared::now_ns(),
                started_at_ns: None,
                oom_killed: false,
            },
        );
        if let Some(tx) = st.monitors.get(&pid) {
            tx.send_replace(true);
        }
    }

    /// The daemon dies: whatever it was waiting for, it never hears of (the monitors live on).
    fn daemon_died(&self) {
        let mut st = self.state.lock().unwrap();
        let pids: Vec<i32> = st.monitors.keys().copied().collect();
        for pid in pids {
            let now = *st.monitors[&pid].borrow();
            let old = st.monitors.insert(pid, watch::channel(now).0).unwrap();
            st.dead.push(old);
        }
    }

    fn runtime_knows(&self, id: &str) -> bool {
        self.state.lock().unwrap().containers.contains_key(id)
    }
}

fn id_of(state_dir: &Path) -> String {
    state_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

#[async_trait]
impl Oci for FakeOci {
    async fn create(&self, h: &Handler, cfg: &MonitorConfig) -> Result<MonitorHandle, OciError> {
        self.call(format!("create {}", cfg.id));
        if self.fail_create.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(OciError::Create {
                id: cfg.id.clone(),
                binary: h.binary.clone(),
                stderr: "the fake runtime refuses this container".into(),
            });
        }
        assert!(
            cfg.bundle.join("config.json").is_file(),
            "create without a spec in {}",
            cfg.bundle.display()
        );
        let mut st = self.state.lock().unwrap();
        st.next_pid += 2;
        let monitor_pid = 1000 + st.next_pid;
        st.containers.insert(
            cfg.id.clone(),
            FakeCtr {
                status: "created",
                monitor_pid,
            },
        );
        let (tx, _) = watch::channel(false);
        st.monitors.insert(monitor_pid, tx);
        Ok(MonitorHandle {
            monitor_pid,
            container_pid: monitor_pid + 1,
        })
    }

    async fn start(&self, _h: &Handler, id: &str) -> Result<(), OciError> {
        self.call(format!("start {id}"));
        {
            let mut st = self.state.lock().unwrap();
            match st.containers.get_mut(id) {
                Some(c) if c.status == "created" => c.status = "running",
                _ => panic!("start of {id}, which is not created"),
            }
        }
        let code = *self.exit_on_start.lock().unwrap();
        if let Some(code) = code {
            let read = self.exit_read.notified();
            tokio::pin!(read);
            read.as_mut().enable();
            self.exit(id, code);
            // Bounded: a collector that never looks fails the test's assertions, not by hanging.
            let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
            // The collector records the exit (a store commit) before `runtime start` returns.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn start_via_monitor(&self, state_dir: &Path) -> Result<(), OciError> {
        panic!("start through the monitor of {}", state_dir.display())
    }

    async fn kill(&self, _h: &Handler, id: &str, signal: i32, _all: bool) -> Result<(), OciError> {
        self.call(format!("kill {id} {signal}"));
        self.exit(id, 128 + signal);
        Ok(())
    }

    async fn delete(&self, _h: &Handler, id: &str, _force: bool) -> Result<(), OciError> {
        self.call(format!("delete {id}"));
        // A created container's init dies with the delete.
        self.exit(id, 137);
        self.state.lock().unwrap().containers.remove(id);
        Ok(())
    }

    async fn state(&self, _h: &Handler, id: &str) -> Result<Option<ContainerState>, OciError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .get(id)
            .map(|c| ContainerState {
                oci_version: "1.0.2".into(),
                id: id.to_string(),
                status: c.status.to_string(),
                pid: c.monitor_pid + 1,
                bundle: String::new(),
                annotations: BTreeMap::new(),
            }))
    }

    async fn wait_monitor(&self, pid: i32) -> Result<(), OciError> {
        let rx = self
            .state
            .lock()
            .unwrap()
            .monitors
            .get(&pid)
            .map(|m| m.subscribe());
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|x| *x).await;
        }
        Ok(())
    }

    fn read_exit(&self, state_dir: &Path) -> Result<Option<ExitInfo>, OciError> {
        let exit = self
            .state
            .lock()
            .unwrap()
            .exits
            .get(&id_of(state_dir))
            .cloned();
        self.exit_read.notify_waiters();
        Ok(exit)
    }

    async fn abandon(&self, state_dir: &Path) -> Result<(), OciError> {
        self.call(format!("abandon {}", id_of(state_dir)));
        Ok(())
    }

    fn monitor_alive(&self, state_dir: &Path) -> Option<i32> {
        let st = self.state.lock().unwrap();
        let c = st.containers.get(&id_of(state_dir))?;
        (c.status != "stopped").then_some(c.monitor_pid)
    }
}

/// The pod network double.
#[derive(Default)]
struct FakeNet {
    fail_setup: std::sync::atomic::AtomicBool,
    /// Pods with a network (ADD done, DEL not yet).
    up: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl PodNet for FakeNet {
    fn status(&self) -> Result<NetworkStatus, NetworkError> {
        Ok(NetworkStatus {
            source: crius_network::ConfigSource::Embedded,
            name: "fake".into(),
            cni_version: "1.0.0".into(),
            plugins: vec!["fake".into()],
        })
    }
    async fn setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError> {
        self.calls.lock().unwrap().push(format!("ADD {}", pod.id));
        if self.fail_setup.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NetworkError::Plugin {
                plugin: "fake".into(),
                command: "ADD".into(),
                code: 7,
                msg: "no addresses left".into(),
                details: String::new(),
            });
        }
        self.up.lock().unwrap().push(pod.id.clone());
        Ok(PodNetworkStatus {
            ips: vec!["10.88.0.7".parse().unwrap()],
            interfaces: vec!["eth0".into()],
            raw_result: serde_json::Value::Null,
        })
    }
    async fn teardown(&self, pod: &PodNetwork) -> Result<(), NetworkError> {
        self.calls.lock().unwrap().push(format!("DEL {}", pod.id));
        self.up.lock().unwrap().retain(|p| *p != pod.id);
        Ok(())
    }
    fn cached_pods(&self) -> Vec<String> {
        self.up.lock().unwrap().clone()
    }
}

/// The image store double: one image; a root filesystem is a directory.
#[derive(Default)]
struct FakeImages {
    rootfs: Mutex<Vec<String>>,
}

impl Images for FakeImages {
    fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        Ok(
            (reference_or_id == IMAGE || reference_or_id == IMAGE_ID).then(|| Image {
                id: IMAGE_ID.into(),
                repo_tags: vec![IMAGE.into()],
                repo_digests: vec![],
                size: 1,
                config: crius_image::ImageConfig {
                    cmd: vec!["sh".into()],
                    ..Default::default()
                },
                pinned: false,
                config_json: "{}".into(),
                chain: vec![],
            }),
        )
    }
    fn prepare_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        target: &Path,
        _mapper: Option<&LowerMapper>,
    ) -> Result<(), ImageError> {
        assert_eq!(image_id, IMAGE_ID);
        std::fs::create_dir_all(target).unwrap();
        self.rootfs.lock().unwrap().push(container_id.to_string());
        Ok(())
    }
    fn remove_rootfs(&self, container_id: &str, target: &Path) -> Result<(), ImageError> {
        let _ = std::fs::remove_dir_all(target);
        self.rootfs.lock().unwrap().retain(|c| c != container_id);
        Ok(())
    }
    fn list_rootfs(&self) -> Result<Vec<String>, ImageError> {
        Ok(self.rootfs.lock().unwrap().clone())
    }
}

/// The platform double: "pins" are files under the pod dir, /dev/shm a directory.
#[derive(Default)]
struct FakePlatform {
    /// Pins and shm dirs in place.
    held: Mutex<Vec<PathBuf>>,
}

impl crate::pod::platform::PodPlatform for FakePlatform {
    fn pin_namespaces(
        &self,
        dir: &Path,
        own_net: bool,
        own_ipc: bool,
        _hostname: &str,
        userns: Option<&crius_spec::PodUserns>,
    ) -> crate::error::Result<crate::pod::namespaces::Pins> {
        assert!(userns.is_none());
        let pin = |kind: &str, want: bool| {
            want.then(|| {
                let p = dir.join("ns").join(kind);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"").unwrap();
                self.held.lock().unwrap().push(p.clone());
                p
            })
        };
        Ok(crate::pod::namespaces::Pins {
            net: pin("net", own_net),
            ipc: pin("ipc", own_ipc),
            uts: pin("uts", own_net),
            user: None,
        })
    }
    fn unpin(&self, pins: &crate::pod::namespaces::Pins) {
        let mut held = self.held.lock().unwrap();
        for p in pins.paths() {
            held.retain(|h| h != p);
        }
    }
    fn mount_shm(&self, dir: &Path) -> crate::error::Result<PathBuf> {
        let p = dir.join("shm");
        std::fs::create_dir_all(&p).unwrap();
        self.held.lock().unwrap().push(p.clone());
        Ok(p)
    }
    fn unmount_shm(&self, shm: &Path) {
        self.held.lock().unwrap().retain(|h| h != shm);
    }
}

/// A runtime over temporary dirs with the doubles in place.
struct World {
    platform: Arc<FakePlatform>,
    rt: Arc<Runtime>,
    oci: Arc<FakeOci>,
    net: Arc<FakeNet>,
    images: Arc<FakeImages>,
    events: tokio::sync::broadcast::Receiver<cri::ContainerEventResponse>,
    _dir: tempfile::TempDir,
}

fn shared(dir: &Path, oci: Arc<FakeOci>, net: Arc<FakeNet>, images: Arc<FakeImages>) -> Shared {
    let cfg = crate::config::Config {
        root: dir.join("root"),
        state: dir.join("state"),
        ..Default::default()
    };
    std::fs::create_dir_all(&cfg.root).unwrap();
    std::fs::create_dir_all(&cfg.state).unwrap();
    let handler = Handler {
        name: "runc".into(),
        binary: PathBuf::from("/nonexistent/fake-runc"),
        root: dir.join("runc"),
        status: HandlerStatus::Available {
            version: "fake".into(),
        },
        features: None,
        systemd_cgroup: false,
        global_args: vec![],
        kind: HandlerKind::Oci,
    };
    let features = crate::handler_features::HandlerFeatures::compute(
        &handler,
        &crate::handler_features::Probes::default(),
    );
    let handlers = crate::oci::Handlers {
        default: "runc".into(),
        default_choice: crate::oci::DefaultChoice {
            configured: "runc".into(),
            chosen: "runc".into(),
            why: String::new(),
        },
        by_name: [("runc".to_string(), Arc::new(handler))].into(),
        host_rro: Err("not probed in unit tests".into()),
        userns: BTreeMap::new(),
        seccomp: BTreeMap::new(),
        exec_seccomp: BTreeMap::new(),
        features: [("runc".to_string(), features)].into(),
    };
    let handlers = crate::oci::LazyHandlers::probed(handlers);
    let image_store = crius_image::ImageStore::open(crius_image::StoreOptions {
        root: cfg.root.join("images"),
        hosts_dir: dir.join("hosts"),
        stall_timeout: Duration::from_secs(5),
        limits: crius_image::UnpackLimits {
            max_layer_unpacked_bytes: 1 << 20,
            max_layer_entries: 1000,
        },
    })
    .unwrap();
    let cni = crius_network::Cni::with_backend(
        crius_network::CniConfig {
            conf_dir: dir.join("cni"),
            bin_dirs: vec![],
            cache_dir: cfg.root.join("cni-cache"),
        },
        cfg.network_backend,
        cfg.native_network.to_native().unwrap(),
    );
    let (events, _) = tokio::sync::broadcast::channel(1024);
    Shared {
        gates: crate::features::Gates::new(BTreeMap::new()),
        store: crate::store::Store::open(&cfg.root.join("crius.redb")).unwrap(),
        handlers,
        oci,
        net,
        rootfs: images,
        images: image_store,
        cni,
        host: crius_spec::HostInfo::default(),
        apparmor: crate::apparmor::AppArmor::new(Box::new(crate::apparmor::RealHost::default())),
        monitor_cgroups: vec![],
        cgroup_driver: crate::cgroups::systemd::Driver::Cgroupfs,
        selinux: crate::selinux::Mode::Ignored,
        host_selinux: false,
        selinux_labels: None,
        events,
        streaming: std::sync::OnceLock::new(),
        criu: crate::criu::Criu::Missing {
            binary: PathBuf::from("/nonexistent/criu"),
        },
        cdi: crate::cdi::Cdi::new(vec![]),
        cfg,
    }
}

impl World {
    /// A world with pod `pods[i]` stored as Ready (on the node's namespaces, no pause), brought in by
    /// start-up recovery as after a restart.
    async fn with_pods(pods: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let (oci, net, images) = Default::default();
        let shared = Arc::new(shared(
            dir.path(),
            Arc::clone(&oci),
            Arc::clone(&net),
            Arc::clone(&images),
        ));
        for name in pods {
            let rec = pod_record(name);
            std::fs::create_dir_all(shared.pod_dir(&rec.id)).unwrap();
            shared
                .store
                .put(crate::store::SANDBOXES, &rec.id, &rec)
                .unwrap();
        }
        let platform = Arc::new(FakePlatform::default());
        let rt = Arc::new(Runtime::with_pods(crate::pod::Pods::with_platform(
            shared,
            platform.clone(),
        )));
        let events = rt.subscribe();
        rt.recover_with(&Machine).await.unwrap();
        World {
            platform,
            rt,
            oci,
            net,
            images,
            events,
            _dir: dir,
        }
    }

    /// The events sent so far, as (id, kind, number of container statuses).
    fn drain_events(&mut self) -> Vec<(String, i32, usize)> {
        let mut out = vec![];
        while let Ok(e) = self.events.try_recv() {
            out.push((
                e.container_id.clone(),
                e.container_event_type,
                e.containers_statuses.len(),
            ));
        }
        out
    }

    async fn create(&self, pod: &str, name: &str) -> crate::error::Result<String> {
        self.rt
            .create_container(&pod_id(pod), container_config(name), None)
            .await
    }

    fn state(&self, id: &str) -> CtrState {
        self.rt.container(id).unwrap().record().state
    }

    async fn wait_state(&self, id: &str, want: CtrState) {
        for _ in 0..500 {
            if self.state(id) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("container {id} is {:?}, never {want:?}", self.state(id));
    }
}

/// The machine as the doubles describe it: the pods' pins (none) are intact, no pause.
struct Machine;

impl crate::pod::recovery::Machine for Machine {
    fn pause_alive(&self, _: &SandboxRecord) -> bool {
        false
    }
    fn pins_intact(&self, _: &SandboxRecord) -> bool {
        true
    }
}

impl crate::container::recovery::Machine for Machine {
    fn monitor_alive(&self, _: &Path) -> bool {
        false
    }
}

fn pod_id(name: &str) -> String {
    format!("{:0>64}", hex::encode(name))
}

fn pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        ..Default::default()
    }
}

fn pod_record(name: &str) -> SandboxRecord {
    SandboxRecord {
        id: pod_id(name),
        config: pod_config(name).encode_to_vec(),
        runtime_handler: "runc".into(),
        state: PodState::Ready,
        created_at: crate::shared::now_ns(),
        pins: Default::default(),
        pause_pid: None,
        ips: vec![],
        network_up: false,
        shm: None,
        hostname_file: None,
        hosts_file: None,
        resolv_file: None,
        cgroup_parent: String::new(),
        resources: vec![],
        overhead: vec![],
    }
}

fn container_config(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        ..Default::default()
    }
}

const CREATED: i32 = cri::ContainerEventType::ContainerCreatedEvent as i32;
const STARTED: i32 = cri::ContainerEventType::ContainerStartedEvent as i32;
const STOPPED: i32 = cri::ContainerEventType::ContainerStoppedEvent as i32;
const DELETED: i32 = cri::ContainerEventType::ContainerDeletedEvent as i32;

#[tokio::test]
async fn a_container_is_created_started_exits_is_stopped_and_removed() {
    let mut w = World::with_pods(&["web"]).await;
    let id = w.create("web", "app").await.unwrap();
    assert_eq!(w.state(&id), CtrState::Created);
    assert!(w.rt.container_dir(&id).join("config.json").is_file());
    assert!(w.images.rootfs.lock().unwrap().contains(&id));

    w.rt.start_container(&id).await.unwrap();
    assert_eq!(w.state(&id), CtrState::Running);
    // A second start is refused: it is running.
    let e = w.rt.start_container(&id).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");

    // The process exits on its own: the collector records the code, and the runtime's state goes.
    w.oci.exit(&id, 3);
    w.wait_state(&id, CtrState::Exited).await;
    let st = w.rt.container_status(&id, false).unwrap().status.unwrap();
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.reason, "Error");
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    for _ in 0..100 {
        if !w.oci.runtime_knows(&id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !w.oci.runtime_knows(&id),
        "runtime state kept after the exit"
    );

    // Stop of an exited container does nothing; remove forgets it, its rootfs and its name.
    w.rt.stop_container(&id, 10).await.unwrap();
    w.rt.remove_container(&id).await.unwrap();
    assert_eq!(
        w.rt.container(&id).err().map(|e| e.code()),
        Some(tonic::Code::NotFound)
    );
    assert!(w.images.rootfs.lock().unwrap().is_empty());
    assert!(!w.rt.container_dir(&id).exists());
    assert!(w
        .rt
        .store
        .list::<crate::container::ContainerRecord>(crate::store::CONTAINERS)
        .unwrap()
        .is_empty());
    // Removed and idempotent.
    w.rt.remove_container(&id).await.unwrap();
    // The name is free again.
    let again = w.create("web", "app").await.unwrap();
    assert_ne!(again, id);

    let evs: Vec<(String, i32)> = w
        .drain_events()
        .into_iter()
        .filter(|(i, _, _)| *i == id)
        .map(|(i, k, _)| (i, k))
        .collect();
    assert_eq!(
        evs,
        [CREATED, STARTED, STOPPED, DELETED].map(|k| (id.clone(), k)),
        "events of {id}"
    );
}

#[tokio::test]
async fn a_running_container_is_stopped_with_its_stop_signal() {
    let w = World::with_pods(&["web"]).await;
    let id = w.create("web", "app").await.unwrap();
    w.rt.start_container(&id).await.unwrap();
    w.rt.stop_container(&id, 5).await.unwrap();
    assert_eq!(w.state(&id), CtrState::Exited);
    let st = w.rt.container_status(&id, false).unwrap().status.unwrap();
    assert_eq!(st.exit_code, 128 + libc::SIGTERM);
    assert!(
        w.oci
            .calls()
            .contains(&format!("kill {id} {}", libc::SIGTERM)),
        "{:?}",
        w.oci.calls()
    );
    w.rt.remove_container(&id).await.unwrap();
}

#[tokio::test]
async fn a_failed_oci_create_rolls_back_and_a_retry_creates_afresh() {
    let w = World::with_pods(&["web"]).await;
    w.oci
        .fail_create
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = w.create("web", "app").await.unwrap_err();
    assert!(e.to_string().contains("refuses"), "{e}");
    // Nothing is left: no record in memory or in the store, no rootfs, no state dir, no name.
    assert!(w.rt.all_containers().is_empty());
    assert!(w
        .rt
        .store
        .list::<crate::container::ContainerRecord>(crate::store::CONTAINERS)
        .unwrap()
        .is_empty());
    assert!(w.images.rootfs.lock().unwrap().is_empty());
    let failed = w
        .oci
        .calls()
        .iter()
        .find_map(|c| c.strip_prefix("create ").map(str::to_string))
        .unwrap();
    assert!(!w.rt.container_dir(&failed).exists());
    assert!(w.oci.calls().contains(&format!("delete {failed}")));

    w.oci
        .fail_create
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let id = w.create("web", "app").await.unwrap();
    assert_ne!(id, failed, "the retry is a fresh create");
    assert_eq!(w.state(&id), CtrState::Created);
    // And a retry of that same request now finds it.
    assert_eq!(w.create("web", "app").await.unwrap(), id);
}

#[tokio::test]
async fn an_exit_right_after_start_is_exited_with_its_code_never_running() {
    let mut w = World::with_pods(&["web"]).await;
    *w.oci.exit_on_start.lock().unwrap() = Some(3);
    let id = w.create("web", "app").await.unwrap();
    w.rt.start_container(&id).await.unwrap();
    let rec = w.rt.container(&id).unwrap().record();
    assert_eq!(rec.state, CtrState::Exited);
    assert_eq!(rec.exit_code, 3);
    assert!(
        rec.started_at > 0 && rec.started_at <= rec.finished_at,
        "{rec:?}"
    );
    // STOPPED (sent by the exit collector once StartContainer is out) never precedes STARTED.
    let mut kinds = vec![];
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.events.recv())
            .await
            .expect("no STOPPED event")
            .unwrap();
        if ev.container_id == id {
            kinds.push(ev.container_event_type);
        }
    }
    assert_eq!(kinds, [CREATED, STARTED, STOPPED]);
}

#[tokio::test]
async fn stopping_and_removing_a_pod_stops_and_removes_its_containers_first() {
    let mut w = World::with_pods(&["web", "db"]).await;
    let a = w.create("web", "a").await.unwrap();
    let b = w.create("web", "b").await.unwrap();
    let other = w.create("db", "c").await.unwrap();
    w.rt.start_container(&a).await.unwrap();
    w.drain_events();

    w.rt.stop_pod(&pod_id("web")).await.unwrap();
    assert_eq!(w.state(&a), CtrState::Exited);
    assert_eq!(w.state(&b), CtrState::Exited);
    assert_eq!(
        w.state(&other),
        CtrState::Created,
        "another pod's container"
    );
    assert_eq!(
        w.rt.pod(&pod_id("web")).unwrap().record().state,
        PodState::NotReady
    );
    // The pod's STOPPED comes after its containers' and carries them.
    let evs = w.drain_events();
    let last = evs.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1, last.2),
        (pod_id("web").as_str(), STOPPED, 2)
    );
    // A stopped pod takes no new container.
    let e = w.create("web", "late").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    w.rt.remove_pod(&pod_id("web")).await.unwrap();
    assert!(w.rt.pod(&pod_id("web")).is_err());
    assert!(w.rt.container(&a).is_err() && w.rt.container(&b).is_err());
    assert_eq!(*w.images.rootfs.lock().unwrap(), vec![other.clone()]);
    let evs = w.drain_events();
    assert_eq!(
        evs.last().map(|e| (e.0.clone(), e.1)),
        Some((pod_id("web"), DELETED))
    );
    // Idempotent, and an unknown pod is success.
    w.rt.remove_pod(&pod_id("web")).await.unwrap();
    w.rt.stop_pod(&pod_id("web")).await.unwrap();
    // Removing a pod whose containers were never stopped stops them on the way.
    w.rt.remove_pod(&pod_id("db")).await.unwrap();
    assert!(w.rt.all_containers().is_empty());
    assert!(w.images.rootfs.lock().unwrap().is_empty());
    assert!(w.net.calls.lock().unwrap().is_empty(), "host-network pods");
}

/// A pod config RunPodSandbox can make without root here: its own network and IPC namespaces (from
/// the platform double), no shared PID namespace (no pause), a kubelet-style cgroup parent.
fn run_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        hostname: name.into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod-{name}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..pod_config(name)
    }
}

#[tokio::test]
async fn run_pod_sandbox_sets_up_network_and_files_and_a_retry_finds_the_pod() {
    let mut w = World::with_pods(&[]).await;
    let id = w.rt.run_pod(run_config("web"), "").await.unwrap();
    let rec = w.rt.pod(&id).unwrap().record();
    assert_eq!(rec.state, PodState::Ready);
    assert_eq!(rec.ips, ["10.88.0.7"]);
    assert!(rec.network_up);
    assert!(rec.pins.net.is_some() && rec.pins.ipc.is_some());
    let hosts = std::fs::read_to_string(rec.hosts_file.as_ref().unwrap()).unwrap();
    assert!(hosts.contains("10.88.0.7\tweb"), "{hosts}");
    assert_eq!(*w.net.calls.lock().unwrap(), [format!("ADD {id}")]);
    // The same request again (a kubelet retry) is the same pod, made once.
    assert_eq!(w.rt.run_pod(run_config("web"), "").await.unwrap(), id);
    assert_eq!(w.net.calls.lock().unwrap().len(), 1);
    let kinds: Vec<i32> = w.drain_events().into_iter().map(|e| e.1).collect();
    assert_eq!(kinds, [CREATED, STARTED]);

    w.rt.stop_pod(&id).await.unwrap();
    let rec = w.rt.pod(&id).unwrap().record();
    assert_eq!(rec.state, PodState::NotReady);
    assert!(!rec.network_up);
    assert!(
        w.platform.held.lock().unwrap().is_empty(),
        "pins and shm released"
    );
    w.rt.remove_pod(&id).await.unwrap();
    assert!(w.rt.all_pods().is_empty());
    assert!(!w.rt.pod_dir(&id).exists());
    assert_eq!(
        *w.net.calls.lock().unwrap(),
        [format!("ADD {id}"), format!("DEL {id}")]
    );
}

#[tokio::test]
async fn a_cni_failure_at_run_pod_sandbox_rolls_back_and_a_retry_makes_a_fresh_pod() {
    let mut w = World::with_pods(&[]).await;
    w.net
        .fail_setup
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = w.rt.run_pod(run_config("web"), "").await.unwrap_err();
    assert!(e.to_string().contains("no addresses left"), "{e}");
    // Undone: no pod in memory or in the store, its namespaces and dir gone, the network released
    // (DEL after the failed ADD), no event, the name free.
    assert!(w.rt.all_pods().is_empty());
    assert!(w
        .rt
        .store
        .list::<SandboxRecord>(crate::store::SANDBOXES)
        .unwrap()
        .is_empty());
    assert!(w.platform.held.lock().unwrap().is_empty());
    let calls = w.net.calls.lock().unwrap().clone();
    let failed = calls[0].strip_prefix("ADD ").unwrap().to_string();
    assert_eq!(calls, [format!("ADD {failed}"), format!("DEL {failed}")]);
    assert!(!w.rt.pod_dir(&failed).exists());
    assert!(w.drain_events().is_empty());

    w.net
        .fail_setup
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let id = w.rt.run_pod(run_config("web"), "").await.unwrap();
    assert_ne!(id, failed, "the retry is a fresh pod");
    assert_eq!(w.rt.pod(&id).unwrap().record().state, PodState::Ready);
}

/// The machine after a restart as the doubles have it: monitors alive as the fake runtime says.
struct Restarted(Arc<FakeOci>);

impl crate::pod::recovery::Machine for Restarted {
    fn pause_alive(&self, _: &SandboxRecord) -> bool {
        false
    }
    fn pins_intact(&self, _: &SandboxRecord) -> bool {
        true
    }
}

impl crate::container::recovery::Machine for Restarted {
    fn monitor_alive(&self, dir: &Path) -> bool {
        self.0.monitor_alive(dir).is_some()
    }
}

#[tokio::test]
async fn restart_recovery_collects_exits_undoes_half_made_containers_and_removes_orphans() {
    let w = World::with_pods(&["web", "db"]).await;
    let exited = w.create("web", "exited").await.unwrap();
    w.rt.start_container(&exited).await.unwrap();
    let half = w.create("web", "half").await.unwrap();
    let orphan = w.create("db", "orphan").await.unwrap();
    let running = w.create("web", "running").await.unwrap();
    w.rt.start_container(&running).await.unwrap();

    // The daemon dies (kill -9). While it is down one container exits; and as if it had died in the
    // middle of a CreateContainer and of a RemovePodSandbox, one record is still Creating and one pod
    // record is gone.
    w.oci.daemon_died();
    w.oci.exit(&exited, 7);
    let mut rec = w.rt.container(&half).unwrap().record();
    rec.state = CtrState::Creating;
    w.rt.store
        .put(crate::store::CONTAINERS, &half, &rec)
        .unwrap();
    w.rt.store
        .delete(crate::store::SANDBOXES, &pod_id("db"))
        .unwrap();

    // A new daemon over the same store and machine.
    let rt = Runtime::with_pods(crate::pod::Pods::with_platform(
        w.rt.pods.shared().clone(),
        Arc::new(FakePlatform::default()),
    ));
    rt.recover_with(&Restarted(w.oci.clone())).await.unwrap();

    // The exit that happened while down is collected with its code, and the runtime's state freed.
    let rec = rt.container(&exited).unwrap().record();
    assert_eq!((rec.state, rec.exit_code), (CtrState::Exited, 7));
    assert!(!w.oci.runtime_knows(&exited));
    // The half-made container and the orphan are undone: killed, deleted, rootfs and record gone.
    for id in [&half, &orphan] {
        assert!(rt.container(id).is_err(), "{id} recovered");
        assert!(!w.oci.runtime_knows(id), "{id} left in the runtime");
        assert!(!w.images.rootfs.lock().unwrap().contains(id), "{id} rootfs");
        assert!(!rt.container_dir(id).exists(), "{id} state dir");
    }
    let stored: Vec<String> = rt
        .store
        .list::<crate::container::ContainerRecord>(crate::store::CONTAINERS)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    // The running one is watched again: its later exit is collected by the new daemon.
    assert_eq!(
        rt.container(&running).unwrap().record().state,
        CtrState::Running
    );
    w.oci.exit(&running, 0);
    for _ in 0..500 {
        if rt.container(&running).unwrap().record().state == CtrState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rec = rt.container(&running).unwrap().record();
    assert_eq!((rec.state, rec.exit_code), (CtrState::Exited, 0));
    // Names: those of kept records are held again, those of undone ones are free.
    let e = rt
        .create_container(&pod_id("web"), container_config("running"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    let again = rt
        .create_container(&pod_id("web"), container_config("half"), None)
        .await
        .unwrap();
    assert_ne!(again, half);
    assert!(rt.pod(&pod_id("db")).is_err());
}
