//! The `crius portability` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::dataset::Dataset;
use crate::run::{RunOptions, Runner};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PortabilityArgs {
    #[command(subcommand)]
    pub cmd: Option<PortabilityCmd>,
    /// A CRI endpoint (unix:///path/to.sock); repeat for several. None: only the release history.
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// A busybox-like image the probes run (sh, sleep, id, cat, grep, touch, mkdir).
    #[arg(long)]
    pub image: Option<String>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the HTML matrix to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Use this dataset instead of the embedded copy.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// cgroup_parent of the probe pods (default: the runtime's).
    #[arg(long, default_value = "")]
    pub cgroup_parent: String,
    /// Directory for the CDI probe's spec; must be one the runtime reads.
    #[arg(long, default_value = "/var/run/cdi")]
    pub cdi_dir: PathBuf,
    /// Only probe these KEPs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub kep: Vec<u32>,
    /// Bound of one probe, in seconds.
    #[arg(long, default_value_t = 25)]
    pub probe_timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum PortabilityCmd {
    /// Check that the dataset (the embedded copy, or FILE) parses and is consistent.
    CheckDataset { file: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("dataset {origin}: {n} problems:\n{list}")]
    Inconsistent {
        origin: String,
        n: usize,
        list: String,
    },
    #[error("--endpoint needs --image")]
    NoImage,
    #[error("write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("interrupted; removed what the probes had made")]
    Interrupted,
}

fn load(file: &Option<PathBuf>) -> Result<(Dataset, String), CliError> {
    Ok(match file {
        Some(p) => (Dataset::load(p)?, p.display().to_string()),
        None => (
            Dataset::embedded()?,
            "embedded data/cri-features.yaml".into(),
        ),
    })
}

pub fn run(args: PortabilityArgs) -> Result<(), CliError> {
    if let Some(PortabilityCmd::CheckDataset { file }) = &args.cmd {
        let (d, origin) = load(file)?;
        let problems = d.check();
        if !problems.is_empty() {
            return Err(CliError::Inconsistent {
                origin,
                n: problems.len(),
                list: problems.join("\n"),
            });
        }
        println!(
            "{origin}: ok — dataset v{} for cri-api {}, {} features, {} excluded, {} Kubernetes / {} containerd / {} CRI-O release dates",
            d.meta.dataset.version,
            d.meta.dataset.cri_api,
            d.features.len(),
            d.excluded.len(),
            d.releases.kubernetes.len(),
            d.releases.containerd.len(),
            d.releases.crio.len()
        );
        return Ok(());
    }
    let (d, _) = load(&args.dataset)?;
    let image = match (&args.image, args.endpoints.is_empty()) {
        (Some(i), _) => i.clone(),
        (None, true) => String::new(),
        (None, false) => return Err(CliError::NoImage),
    };
    let mut opts = RunOptions::new(args.endpoints.clone(), image);
    opts.probe.cgroup_parent = args.cgroup_parent.clone();
    opts.probe.cdi_dir = args.cdi_dir.clone();
    opts.only = args.kep.clone();
    opts.per_probe = Duration::from_secs(args.probe_timeout.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let runner = Runner::new();
    let report = rt.block_on(async {
        let progress = |line: String| eprintln!("{line}");
        tokio::select! {
            r = runner.run(&d, &opts, &progress) => Ok(r),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: removing what the probes made");
                runner.abort().await;
                Err(CliError::Interrupted)
            }
        }
    })?;
    if let Some(p) = &args.html {
        std::fs::write(p, crate::report::html(&report)).map_err(|source| CliError::Write {
            path: p.display().to_string(),
            source,
        })?;
        eprintln!("HTML matrix written to {}", p.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::report::table(&report));
    }
    Ok(())
}
