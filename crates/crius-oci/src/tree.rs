//! Killing a process together with everything it started, so that a timed-out exec leaves
//! nothing behind in the container — not even a zombie.
//!
//! Order matters. A process killed before its children orphans them: they are reparented to the
//! container's pid 1, which (a `sleep`, `top`, an app) often never reaps, so they stay visible to
//! `pgrep` forever. So descendants go first, deepest first, while their parents are still alive
//! to reap them; the root goes last, and its own parent (the runtime's `exec`, which waits for it)
//! reaps it. Every signal goes through a pidfd opened while the process is known to be a child of
//! the expected parent, so a recycled pid is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The direct children of `pid` (all threads), from `/proc/<pid>/task/*/children`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `(state, ppid)` from `/proc/<pid>/stat`; None once the pid is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields after it start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every descendant of `root` as `(pid, parent)`, parents before children.
pub fn descendants(root: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            if c != root && !out.iter().any(|(q, _)| *q == c) {
                out.push((c, p));
                queue.push(c);
            }
        }
    }
    out
}

/// Sends SIGKILL to `pid` only if it is still a child of `parent` (or any process when `parent` is
/// None). Returns false when the process is already gone or no longer the one we meant.
fn kill_checked(pid: i32, parent: Option<i32>) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd is a fresh pidfd owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    match (stat(pid), parent) {
        (None, _) => return false,
        (Some((_, pp)), Some(want)) if pp != want => return false,
        _ => {}
    }
    // SAFETY: pidfd_send_signal on our own pidfd, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// Kills `root` and all its descendants (see the module doc for the order), giving each parent up
/// to `reap_grace` in total to reap the children killed under it. Returns when the root has been
/// signalled; the caller waits for the root's own parent to reap it. Blocks (it sleeps between
/// rounds): call it from a blocking thread.
pub fn kill_tree(root: i32, parent: Option<i32>, reap_grace: Duration) {
    let deadline = Instant::now() + reap_grace;
    loop {
        let desc = descendants(root);
        if desc.is_empty() {
            break;
        }
        let live: Vec<(i32, i32)> = desc
            .iter()
            .copied()
            .filter(|(p, _)| matches!(stat(*p), Some((s, _)) if s != 'Z' && s != 'X'))
            .collect();
        // Deepest first: the list is parents-before-children.
        for (pid, pp) in live.iter().rev() {
            kill_checked(*pid, Some(*pp));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_checked(root, parent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn kills_children_before_the_root_and_leaves_no_zombie() {
        // sh (root) → a background sleep and a foreground sleep; sh reaps what it started.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 1234 & sleep 1235; wait"])
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        let t0 = Instant::now();
        while descendants(root).len() < 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "children never appeared"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let kids: Vec<i32> = descendants(root).into_iter().map(|(p, _)| p).collect();
        kill_tree(
            root,
            Some(std::process::id() as i32),
            Duration::from_secs(1),
        );
        // sh may finish its `wait` before the kill reaches it; either way it ends now.
        child.wait().unwrap();
        for k in kids {
            // Reaped by sh before it died: not even a zombie under us or init.
            assert!(stat(k).is_none(), "child {k} is still there: {:?}", stat(k));
        }
    }

    #[test]
    fn a_pid_with_another_parent_is_not_signalled() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(!kill_checked(pid, Some(1)));
        assert!(stat(pid).is_some());
        assert!(kill_checked(pid, Some(std::process::id() as i32)));
        child.wait().unwrap();
    }
}
