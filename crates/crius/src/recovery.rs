//! Recovery decisions: what start-up does with each recorded pod and container, given what exists on
//! the machine. The decisions are pure (a record's state and the facts in, a plan out) so that they
//! are unit-tested without root; `Machine` is the seam through which `pod::recover` and
//! `container::recover` learn the facts (the real one looks at /proc, mounts and monitor files).

use std::path::Path;

use crate::container::CtrState;
use crate::pod::{PodState, SandboxRecord};

/// What recovery can learn about the machine.
pub trait Machine {
    /// Whether the pod's recorded pause process still runs (and is that pod's pause).
    fn pause_alive(&self, rec: &SandboxRecord) -> bool;
    /// Whether every namespace pin the record names is still a mounted namespace.
    fn pins_intact(&self, rec: &SandboxRecord) -> bool;
    /// Whether the container's monitor still runs.
    fn monitor_alive(&self, container_dir: &Path) -> bool;
    /// Whether the pod runs on a sandbox handler (gVisor) whose sandbox is gone.
    fn sandbox_gone(&self, _rec: &SandboxRecord) -> bool {
        false
    }
}

/// The machine as it is.
pub struct Host<'a> {
    pub rt: &'a crate::runtime::Runtime,
}

impl Machine for Host<'_> {
    fn pause_alive(&self, rec: &SandboxRecord) -> bool {
        rec.pause_pid.is_some_and(|pid| {
            crate::pod::pause::open(pid, &self.rt.pod_dir(&rec.id).join("pause.pid")).is_ok()
        })
    }

    fn pins_intact(&self, rec: &SandboxRecord) -> bool {
        rec.pins
            .paths()
            .all(|p| crate::pod::namespaces::is_pinned(p))
    }

    fn monitor_alive(&self, container_dir: &Path) -> bool {
        crius_oci::monitor_alive(container_dir).is_some()
    }

    fn sandbox_gone(&self, rec: &SandboxRecord) -> bool {
        self.rt
            .handlers
            .existing(&rec.runtime_handler)
            .is_ok_and(|h| h.kind == crius_oci::HandlerKind::Sandbox)
            && !crate::pod::sandbox::alive(&self.rt.pod_dir(&rec.id))
    }
}

/// What recovery does with a recorded pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPlan {
    /// Half made when crius stopped: release everything it may hold (network, pause found by its pid
    /// file, pins, mounts, cgroup) and forget it.
    Undo,
    /// Ready and intact: keep it, watching its pause if it has one.
    Keep { watch_pause: bool },
    /// Ready but its namespaces or pause are gone (a reboot, an OOM kill): release what is left and
    /// report it NotReady.
    Lost,
    /// NotReady with its network still attached (a CNI DEL failed or was cut short): retry the DEL.
    ReleaseNetwork,
    /// NotReady and released: nothing to do.
    Nothing,
}

pub fn plan_pod(rec: &SandboxRecord, m: &dyn Machine) -> PodPlan {
    match rec.state {
        PodState::Creating => PodPlan::Undo,
        PodState::Ready => {
            let pause_gone = rec.pause_pid.is_some() && !m.pause_alive(rec);
            if pause_gone || m.sandbox_gone(rec) || !m.pins_intact(rec) {
                PodPlan::Lost
            } else {
                PodPlan::Keep {
                    watch_pause: rec.pause_pid.is_some(),
                }
            }
        }
        PodState::NotReady if rec.network_up => PodPlan::ReleaseNetwork,
        PodState::NotReady => PodPlan::Nothing,
    }
}

/// What recovery does with a recorded container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrPlan {
    /// Its pod is gone: remove it (kill, runtime delete, rootfs, state).
    RemoveOrphan,
    /// Half made when crius stopped: remove everything the create may have made.
    Undo,
    /// Its monitor runs: watch for the exit. `check_started`: recorded Created, so the runtime is
    /// asked whether a StartContainer cut short by the crash did start it.
    Watch { check_started: bool },
    /// Recorded Created/Running but the monitor is gone: the exit happened while crius was down.
    CollectExit,
    /// Exited (or Unknown): its status stands until RemoveContainer.
    Nothing,
}

pub fn plan_container(
    state: CtrState,
    pod_known: bool,
    container_dir: &Path,
    m: &dyn Machine,
) -> CtrPlan {
    if !pod_known {
        return CtrPlan::RemoveOrphan;
    }
    match state {
        CtrState::Creating => CtrPlan::Undo,
        CtrState::Created | CtrState::Running => {
            if m.monitor_alive(container_dir) {
                CtrPlan::Watch {
                    check_started: state == CtrState::Created,
                }
            } else {
                CtrPlan::CollectExit
            }
        }
        CtrState::Exited | CtrState::Unknown => CtrPlan::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::namespaces::Pins;
    use std::path::PathBuf;

    /// A machine described by the test.
    struct Fake {
        pause: bool,
        pins: bool,
        monitor: bool,
    }

    impl Machine for Fake {
        fn pause_alive(&self, _: &SandboxRecord) -> bool {
            self.pause
        }
        fn pins_intact(&self, _: &SandboxRecord) -> bool {
            self.pins
        }
        fn monitor_alive(&self, _: &Path) -> bool {
            self.monitor
        }
    }

    fn pod(state: PodState, pause: bool, network_up: bool) -> SandboxRecord {
        SandboxRecord {
            id: "p".into(),
            config: vec![],
            runtime_handler: "runc".into(),
            state,
            created_at: 0,
            pins: Pins {
                net: Some(PathBuf::from("/run/crius/pods/p/net")),
                ..Default::default()
            },
            pause_pid: pause.then_some(42),
            ips: vec![],
            network_up,
            shm: None,
            hostname_file: None,
            hosts_file: None,
            resolv_file: None,
            cgroup_parent: String::new(),
            resources: vec![],
            overhead: vec![],
        }
    }

    #[test]
    fn pod_plans() {
        use PodPlan::*;
        use PodState::*;
        let all_there = Fake {
            pause: true,
            pins: true,
            monitor: true,
        };
        let reboot = Fake {
            pause: false,
            pins: false,
            monitor: false,
        };
        let pause_killed = Fake {
            pause: false,
            pins: true,
            monitor: false,
        };
        // (state, has pause, network up, machine, plan)
        let table: &[(PodState, bool, bool, &Fake, PodPlan)] = &[
            (Creating, false, false, &all_there, Undo),
            (Creating, true, true, &all_there, Undo),
            (Creating, false, true, &reboot, Undo),
            (Ready, true, true, &all_there, Keep { watch_pause: true }),
            (Ready, false, true, &all_there, Keep { watch_pause: false }),
            // No pause recorded: a dead pause is no reason to call the pod lost.
            (
                Ready,
                false,
                true,
                &pause_killed,
                Keep { watch_pause: false },
            ),
            (Ready, true, true, &pause_killed, Lost),
            (Ready, true, true, &reboot, Lost),
            (Ready, false, true, &reboot, Lost),
            (NotReady, false, true, &all_there, ReleaseNetwork),
            (NotReady, true, true, &reboot, ReleaseNetwork),
            (NotReady, false, false, &reboot, Nothing),
            (NotReady, true, false, &all_there, Nothing),
        ];
        for (state, pause, net, m, want) in table {
            assert_eq!(
                plan_pod(&pod(*state, *pause, *net), *m),
                *want,
                "{state:?} pause={pause} network_up={net} pause_alive={} pins={}",
                m.pause,
                m.pins
            );
        }
    }

    #[test]
    fn container_plans() {
        use CtrPlan::*;
        use CtrState::*;
        let dir = Path::new("/run/crius/containers/c");
        let alive = Fake {
            pause: true,
            pins: true,
            monitor: true,
        };
        let dead = Fake {
            pause: true,
            pins: true,
            monitor: false,
        };
        let table: &[(CtrState, bool, &Fake, CtrPlan)] = &[
            (Creating, false, &alive, RemoveOrphan),
            (Running, false, &alive, RemoveOrphan),
            (Exited, false, &dead, RemoveOrphan),
            (Creating, true, &alive, Undo),
            (Creating, true, &dead, Undo),
            (
                Created,
                true,
                &alive,
                Watch {
                    check_started: true,
                },
            ),
            (
                Running,
                true,
                &alive,
                Watch {
                    check_started: false,
                },
            ),
            (Created, true, &dead, CollectExit),
            (Running, true, &dead, CollectExit),
            (Exited, true, &alive, Nothing),
            (Unknown, true, &dead, Nothing),
        ];
        for (state, pod_known, m, want) in table {
            assert_eq!(
                plan_container(*state, *pod_known, dir, *m),
                *want,
                "{state:?} pod_known={pod_known} monitor={}",
                m.monitor
            );
        }
    }
}
