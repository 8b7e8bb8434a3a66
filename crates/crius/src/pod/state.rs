//! The pod state machine: which state follows which event, and what each state allows. Every state
//! change of a pod record goes through [`PodState::next`].
//!
//! ```text
//!  Creating ──SetUp──▶ Ready ──Stopped / Lost──▶ NotReady ──Stopped──▶ (stays, idempotent)
//! ```
//!
//! A pod whose creation fails never leaves Creating: it is undone and its record removed.

use super::PodState;

/// What happens to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodEvent {
    /// Every step of RunPodSandbox succeeded.
    SetUp,
    /// StopPodSandbox released the pod's network and processes.
    Stopped,
    /// Recovery found the pod's namespaces or pause process gone (a reboot).
    Lost,
}

/// The outcome of applying an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodTransition {
    To(PodState),
    /// Already there (a repeated StopPodSandbox): nothing changes.
    Stale,
    /// The event cannot happen in this state.
    Invalid,
}

impl PodState {
    pub fn next(self, ev: PodEvent) -> PodTransition {
        use PodEvent as E;
        use PodState as S;
        match (self, ev) {
            (S::Creating, E::SetUp) => PodTransition::To(S::Ready),
            (S::Ready, E::Stopped | E::Lost) => PodTransition::To(S::NotReady),
            (S::NotReady, E::Stopped | E::Lost) => PodTransition::Stale,
            _ => PodTransition::Invalid,
        }
    }

    /// CreateContainer (and port forwarding) may use the pod.
    pub fn can_create_container(self) -> bool {
        self == PodState::Ready
    }

    /// The object is visible to List calls (not half-made).
    pub fn listed(self) -> bool {
        self != PodState::Creating
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PodEvent as E;
    use PodState as S;
    use PodTransition as T;

    #[test]
    fn transition_table() {
        let table = [
            (S::Creating, E::SetUp, T::To(S::Ready)),
            (S::Creating, E::Stopped, T::Invalid),
            (S::Creating, E::Lost, T::Invalid),
            (S::Ready, E::SetUp, T::Invalid),
            (S::Ready, E::Stopped, T::To(S::NotReady)),
            (S::Ready, E::Lost, T::To(S::NotReady)),
            (S::NotReady, E::SetUp, T::Invalid),
            (S::NotReady, E::Stopped, T::Stale),
            (S::NotReady, E::Lost, T::Stale),
        ];
        for (from, ev, want) in table {
            assert_eq!(from.next(ev), want, "{from:?} + {ev:?}");
        }
    }

    #[test]
    fn guard_table() {
        for (s, create, listed) in [
            (S::Creating, false, false),
            (S::Ready, true, true),
            (S::NotReady, false, true),
        ] {
            assert_eq!(
                (s.can_create_container(), s.listed()),
                (create, listed),
                "{s:?}"
            );
        }
    }
}
