//! Single-use, expiring URL tokens: the only authorisation a streaming URL carries, so they are
//! random (128 bits), removed on first use and worthless after the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;

use crate::{AttachRequest, ExecRequest, PortForwardRequest};

/// A request waiting for its client to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// Which URL path a token was issued for; a token only works on its own path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Pending {
    fn kind(&self) -> Kind {
        match self {
            Pending::Exec(_) => Kind::Exec,
            Pending::Attach(_) => Kind::Attach,
            Pending::PortForward(_) => Kind::PortForward,
        }
    }
}

pub(crate) struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Cache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `req` under a fresh token. Expired entries are swept here so the map stays bounded
    /// by the issue rate times the TTL without a background task.
    pub(crate) fn insert(&self, req: Pending) -> String {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, (deadline, _)| *deadline > now);
        entries.insert(token.clone(), (now + self.ttl, req));
        token
    }

    /// Removes and returns the request for `token` if it exists, has not expired and was issued
    /// for `kind`. A token presented on the wrong path is burnt anyway: it has been disclosed.
    pub(crate) fn take(&self, token: &str, kind: Kind) -> Option<Pending> {
        let (deadline, req) = self.lock().remove(token)?;
        if deadline <= Instant::now() || req.kind() != kind {
            return None;
        }
        Some(req)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Pending)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single insert or
        // remove), so recovering from poisoning is safe.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
    }

    #[test]
    fn single_use() {
        let cache = Cache::new(Duration::from_secs(60));
        let t = cache.insert(exec());
        assert!(t.len() >= 16, "token {t} too short");
        assert_eq!(cache.take(&t, Kind::Exec), Some(exec()));
        assert_eq!(cache.take(&t, Kind::Exec), None);
    }

    #[test]
    fn wrong_kind_is_rejected_and_burnt() {
        let cache = Cache::new(Duration::from_secs(60));
        let t = cache.insert(exec());
        assert_eq!(cache.take(&t, Kind::Attach), None);
        assert_eq!(cache.take(&t, Kind::Exec), None);
    }

    #[test]
    fn expiry() {
        let cache = Cache::new(Duration::from_millis(20));
        let t = cache.insert(exec());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.take(&t, Kind::Exec), None);
    }

    #[test]
    fn tokens_are_distinct_and_url_safe() {
        let cache = Cache::new(Duration::from_secs(60));
        let a = cache.insert(exec());
        let b = cache.insert(exec());
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
