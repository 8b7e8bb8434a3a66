//! The daemon's memory at rest (issue 16: ≤ 15 MiB RSS idle after a 200-pod churn).
//!
//! Measured with glibc's malloc: after a churn most of the idle RSS was freed heap that glibc kept —
//! one arena per thread that ever allocated (up to 8 per core: tokio workers plus up to hundreds of
//! blocking-pool threads), each keeping its top chunk and free lists. Two arenas are enough for a
//! daemon whose work is mostly waiting on child processes, and a periodic `malloc_trim` hands the
//! freed pages back once the burst is over.

use std::time::Duration;

/// How often freed heap is given back to the kernel.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Caps glibc's arenas; call before the first thread is spawned.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called while the process is single-threaded.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap pages to the kernel (all arenas).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A task that trims every [`TRIM_EVERY`] on a blocking thread (a trim walks the heap).
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn trim_returns_freed_heap() {
        super::tune_allocator();
        // Many small blocks (below the mmap threshold), most freed again; every 16th stays, so the
        // freed space lies between live blocks where free() cannot shrink the heap by itself.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4000]).collect();
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(16).collect();
        let rss = || -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap()
        };
        let before = rss();
        super::trim();
        let after = rss();
        assert!(
            after + 40_000 < before,
            "trim gave back too little: {before} KiB -> {after} KiB"
        );
        assert_eq!(kept.len(), 1250);
    }
}
