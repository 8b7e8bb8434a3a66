//! Recovery decisions for containers: what start-up does with each recorded container, given what
//! exists on the machine. Pure, so unit-tested without root; `Machine` is the seam through which
//! `container::recover` learns the facts (the real one, `crate::recovery::Host`, reads monitor files).

use std::path::Path;

use super::CtrState;

/// What container recovery can learn about the machine.
pub trait Machine {
    /// Whether the container's monitor still runs.
    fn monitor_alive(&self, container_dir: &Path) -> bool;
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

    /// A machine described by the test.
    struct Fake {
        monitor: bool,
    }

    impl Machine for Fake {
        fn monitor_alive(&self, _: &Path) -> bool {
            self.monitor
        }
    }

    #[test]
    fn container_plans() {
        use CtrPlan::*;
        use CtrState::*;
        let dir = Path::new("/run/crius/containers/c");
        let alive = Fake { monitor: true };
        let dead = Fake { monitor: false };
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
