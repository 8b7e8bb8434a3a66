//! Start-up recovery's view of the machine. The decisions are pure and live with their services
//! (`pod::recovery::plan_pod`, `container::recovery::plan_container`, unit-tested without root through
//! their `Machine` traits); `Host` is the real machine behind both traits (it looks at /proc, mounts and
//! monitor files). The facade (`runtime::Runtime::recover`) hands it to pods, then containers.

use std::path::Path;

use crate::pod::SandboxRecord;

/// The machine as it is.
pub struct Host<'a> {
    pub shared: &'a crate::shared::Shared,
}

impl crate::pod::recovery::Machine for Host<'_> {
    fn pause_alive(&self, rec: &SandboxRecord) -> bool {
        rec.pause_pid.is_some_and(|pid| {
            crate::pod::pause::open(pid, &self.shared.pod_dir(&rec.id).join("pause.pid")).is_ok()
        })
    }

    fn pins_intact(&self, rec: &SandboxRecord) -> bool {
        rec.pins
            .paths()
            .all(|p| crate::pod::namespaces::is_pinned(p))
    }

    fn sandbox_gone(&self, rec: &SandboxRecord) -> bool {
        self.shared
            .handlers
            .existing(&rec.runtime_handler)
            .is_ok_and(|h| h.kind == crius_oci::HandlerKind::Sandbox)
            && !crate::pod::sandbox::alive(&self.shared.pod_dir(&rec.id))
    }
}

impl crate::container::recovery::Machine for Host<'_> {
    fn monitor_alive(&self, container_dir: &Path) -> bool {
        crius_oci::monitor_alive(container_dir).is_some()
    }
}
