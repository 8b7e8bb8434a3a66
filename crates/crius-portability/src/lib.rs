//! `crius portability`: measures any CRI endpoint against SIG Node's CRI feature policy.
//!
//! For each KEP of the dataset (`data/cri-features.yaml`, kept in this repository) a live probe drives
//! the endpoint over the CRI and checks the effect inside a real container; each (feature, endpoint)
//! gets one [`Verdict`]. The policy is then applied to the measurements and to the dataset's release
//! history. Outputs: a terminal table, JSON, and a self-contained HTML matrix.

pub mod cleanup;
pub mod cli;
pub mod client;
pub mod dataset;
pub mod policy;
pub mod probe;
pub mod report;
pub mod run;
pub mod verdict;

pub use dataset::Dataset;
pub use run::{Report, RunOptions, Runner};
pub use verdict::{Outcome, Verdict};
