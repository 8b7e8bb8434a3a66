//! crius' own cgroups (not the containers': the OCI runtime makes those from the spec's cgroupsPath).

pub mod lifetime;
pub mod placement;
pub mod systemd;
