//! Recovery decisions for pods: what start-up does with each recorded pod, given what exists on the
//! machine. Pure (a record and the facts in, a plan out), so unit-tested without root; `Machine` is
//! the seam through which `pod::recover` learns the facts (the real one, `crate::recovery::Host`,
//! looks at /proc and mounts).

use super::{PodState, SandboxRecord};

/// What pod recovery can learn about the machine.
pub trait Machine {
    /// Whether the pod's recorded pause process still runs (and is that pod's pause).
    fn pause_alive(&self, rec: &SandboxRecord) -> bool;
    /// Whether every namespace pin the record names is still a mounted namespace.
    fn pins_intact(&self, rec: &SandboxRecord) -> bool;
    /// Whether the pod runs on a sandbox handler (gVisor) whose sandbox is gone.
    fn sandbox_gone(&self, _rec: &SandboxRecord) -> bool {
        false
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::namespaces::Pins;
    use std::path::PathBuf;

    /// A machine described by the test.
    struct Fake {
        pause: bool,
        pins: bool,
    }

    impl Machine for Fake {
        fn pause_alive(&self, _: &SandboxRecord) -> bool {
            self.pause
        }
        fn pins_intact(&self, _: &SandboxRecord) -> bool {
            self.pins
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
        };
        let reboot = Fake {
            pause: false,
            pins: false,
        };
        let pause_killed = Fake {
            pause: false,
            pins: true,
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
}
