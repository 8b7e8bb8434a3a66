//! The container state machine: which state follows which event, and which operations a state
//! allows (guards in the style of youki's `can_start`/`can_kill`/`can_delete`). Every state change
//! of a container record goes through [`CtrState::next`]; an event that does not apply is an error,
//! never a silent overwrite.
//!
//! ```text
//!  Creating ──Created──▶ Created ──Started──▶ Running
//!     │                     │                    │
//!     └──────Exited─────────┴──────Exited────────┴──▶ Exited
//!  Unknown (lost monitor) ──Exited──▶ Exited
//! ```
//!
//! The race this settles: a container that exits within a millisecond of `runtime start` has its
//! exit collected (Created/Running → Exited) before StartContainer records Started. Started on an
//! Exited container is then [`Transition::Stale`]: the exit stands, with its code.

use super::CtrState;

/// What happens to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrEvent {
    /// `runtime create` succeeded: the init process waits on the exec fifo.
    Created,
    /// `runtime start` succeeded.
    Started,
    /// The exit was collected (from the monitor, or because the monitor is gone).
    Exited,
}

/// The outcome of applying an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state changes to this one.
    To(CtrState),
    /// The event came after a later one already applied (Started after Exited): nothing changes.
    Stale,
    /// The event cannot happen in this state: a bug or a corrupt record.
    Invalid,
}

impl CtrState {
    /// The state after `ev`.
    pub fn next(self, ev: CtrEvent) -> Transition {
        use CtrEvent as E;
        use CtrState as S;
        match (self, ev) {
            (S::Creating, E::Created) => Transition::To(S::Created),
            (S::Created, E::Started) => Transition::To(S::Running),
            (S::Creating | S::Created | S::Running | S::Unknown, E::Exited) => {
                Transition::To(S::Exited)
            }
            // The exit was collected first; it stands.
            (S::Exited, E::Started | E::Exited) => Transition::Stale,
            _ => Transition::Invalid,
        }
    }

    /// StartContainer is allowed.
    pub fn can_start(self) -> bool {
        self == CtrState::Created
    }

    /// The container has a process to signal (StopContainer does work).
    pub fn can_kill(self) -> bool {
        matches!(self, CtrState::Created | CtrState::Running)
    }

    /// RemoveContainer may delete it without stopping it first.
    pub fn can_delete(self) -> bool {
        matches!(self, CtrState::Exited | CtrState::Unknown)
    }

    /// ExecSync, Exec, Attach, ReopenContainerLog are allowed.
    pub fn can_exec(self) -> bool {
        self == CtrState::Running
    }

    /// UpdateContainerResources is allowed.
    pub fn can_update(self) -> bool {
        matches!(self, CtrState::Created | CtrState::Running)
    }

    /// The object is visible to List calls (not half-made).
    pub fn listed(self) -> bool {
        self != CtrState::Creating
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CtrEvent as E;
    use CtrState as S;
    use Transition as T;

    #[test]
    fn transition_table() {
        let table = [
            (S::Creating, E::Created, T::To(S::Created)),
            (S::Creating, E::Started, T::Invalid),
            (S::Creating, E::Exited, T::To(S::Exited)),
            (S::Created, E::Created, T::Invalid),
            (S::Created, E::Started, T::To(S::Running)),
            (S::Created, E::Exited, T::To(S::Exited)),
            (S::Running, E::Created, T::Invalid),
            (S::Running, E::Started, T::Invalid),
            (S::Running, E::Exited, T::To(S::Exited)),
            (S::Exited, E::Created, T::Invalid),
            (S::Exited, E::Started, T::Stale),
            (S::Exited, E::Exited, T::Stale),
            (S::Unknown, E::Created, T::Invalid),
            (S::Unknown, E::Started, T::Invalid),
            (S::Unknown, E::Exited, T::To(S::Exited)),
        ];
        for (from, ev, want) in table {
            assert_eq!(from.next(ev), want, "{from:?} + {ev:?}");
        }
    }

    #[test]
    fn guard_table() {
        // (state, can_start, can_kill, can_delete, can_exec, can_update, listed)
        let table = [
            (S::Creating, false, false, false, false, false, false),
            (S::Created, true, true, false, false, true, true),
            (S::Running, false, true, false, true, true, true),
            (S::Exited, false, false, true, false, false, true),
            (S::Unknown, false, false, true, false, false, true),
        ];
        for (s, start, kill, delete, exec, update, listed) in table {
            assert_eq!(
                (
                    s.can_start(),
                    s.can_kill(),
                    s.can_delete(),
                    s.can_exec(),
                    s.can_update(),
                    s.listed()
                ),
                (start, kill, delete, exec, update, listed),
                "{s:?}"
            );
        }
    }
}
