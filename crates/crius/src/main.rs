//! The `crius` command: the daemon and its operator tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use crius::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Parser)]
#[command(name = "crius", version, about = "A Kubernetes CRI container runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start: boxing the daemon's flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the CRI daemon.
    Daemon(DaemonArgs),
    /// Measure CRI endpoints (crius, containerd, CRI-O) against SIG Node's CRI feature policy.
    Portability(crius_portability::cli::PortabilityArgs),
    /// Print the feature table: every CRI feature with its maturity in crius and whether it is on.
    Features {
        /// Config file whose feature_gates apply.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the per-handler feature matrix the running daemon probed (asks its Status).
        #[arg(long)]
        handlers: bool,
        /// The daemon's socket (with --handlers).
        #[arg(long, default_value = "/run/crius/crius.sock")]
        socket: PathBuf,
    },
    /// Print the version.
    Version,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print the AppArmor profile crius loads as `crius-default` (RuntimeDefault on AppArmor hosts).
    ApparmorProfile,
    /// Image operations that go through the running daemon.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Tools for crius' own tests.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        cmd: DebugCmd,
    },
}

#[derive(Subcommand)]
enum DebugCmd {
    /// List the crash points (`CRIUS_CRASH_POINT=<name> crius daemon` dies there as with kill -9).
    CrashPoints,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the complete default configuration as commented TOML (a valid config file).
    Default,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import an OCI image layout or `docker save` tarball (for air-gapped nodes).
    Import {
        /// The tarball.
        file: PathBuf,
        /// The daemon's socket.
        #[arg(long, default_value = "/run/crius/crius.sock")]
        socket: PathBuf,
    },
}

#[derive(Args, Clone)]
struct DaemonArgs {
    /// TOML config file; every flag below is also a key there. Missing default file = embedded defaults.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Persistent state dir (metadata, images, CNI cache) [default: /var/lib/crius]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state dir (sockets, bundles, namespace pins) [default: /run/crius]
    #[arg(long)]
    state: Option<PathBuf>,
    /// The CRI socket [default: /run/crius/crius.sock]
    #[arg(long)]
    listen: Option<PathBuf>,
    /// Registry hosts dir, containerd layout <dir>/<host>/hosts.toml [default: /etc/crius/certs.d]
    #[arg(long)]
    registry_config_dir: Option<PathBuf>,
    /// CNI config dir [default: /etc/cni/net.d]
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// CNI plugin dir; repeat or comma-separate for several [default: /opt/cni/bin,/usr/lib/cni]
    #[arg(long, value_delimiter = ',')]
    cni_bin_dir: Vec<PathBuf>,
    /// CDI spec dirs, lowest priority first; repeat or comma-separate [default: /etc/cdi,/var/run/cdi]
    #[arg(long, value_delimiter = ',')]
    cdi_spec_dirs: Vec<PathBuf>,
    /// CRIU binary probed for checkpointing [default: criu]
    #[arg(long)]
    criu_path: Option<PathBuf>,
    /// Runtime handler for pods that name none [default: runc]
    #[arg(long)]
    default_runtime: Option<String>,
    /// Log level or tracing filter [default: info]
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<crius::logging::LogFormat>,
    /// Streaming server address for exec/attach/port-forward; a bare IP means port 0 [default: 127.0.0.1:0]
    #[arg(long, value_parser = crius::config::parse_streaming_address)]
    streaming_address: Option<std::net::SocketAddr>,
    /// Prometheus metrics endpoint address, e.g. 127.0.0.1:9090 [default: off]
    #[arg(long)]
    metrics_address: Option<std::net::SocketAddr>,
    /// OTLP/HTTP trace endpoint, e.g. http://127.0.0.1:4318/v1/traces [default: off]
    #[arg(long)]
    tracing_endpoint: Option<String>,
}

fn parse_log_format(s: &str) -> Result<crius::logging::LogFormat, String> {
    match s {
        "text" => Ok(crius::logging::LogFormat::Text),
        "json" => Ok(crius::logging::LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format (text, json)")),
    }
}

impl DaemonArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let explicit = self.config.as_path() != std::path::Path::new(DEFAULT_CONFIG_PATH);
        let mut c = Config::load(&self.config, explicit)?;
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = &self.$f {
                    c.$f = v.clone();
                }
            };
        }
        set!(root);
        set!(state);
        set!(listen);
        set!(registry_config_dir);
        set!(cni_conf_dir);
        set!(default_runtime);
        set!(log_level);
        set!(log_format);
        set!(streaming_address);
        set!(criu_path);
        if !self.cdi_spec_dirs.is_empty() {
            c.cdi_spec_dirs = self.cdi_spec_dirs.clone();
        }
        if let Some(a) = self.metrics_address {
            c.metrics_address = Some(a);
        }
        if let Some(t) = &self.tracing_endpoint {
            c.tracing_endpoint = Some(t.clone());
        }
        if !self.cni_bin_dir.is_empty() {
            c.cni_bin_dir = self.cni_bin_dir.clone();
        }
        // A --state that moves the runtime state moves the default socket with it.
        if self.listen.is_none() && self.state.is_some() && c.listen == Config::default().listen {
            c.listen = c.state.join("crius.sock");
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Daemon(args) => run_daemon(args),
        Cmd::Portability(args) => crius_portability::cli::run(args).map_err(Into::into),
        Cmd::Features {
            json,
            handlers: true,
            socket,
            ..
        } => handler_features(socket, json),
        Cmd::Features { config, json, .. } => (|| {
            let explicit = config.as_path() != std::path::Path::new(DEFAULT_CONFIG_PATH);
            let c = Config::load(&config, explicit)?;
            c.validate()?;
            let criu = crius::criu::probe(&c.criu_path);
            let gates = crius::features::Gates::new(c.feature_gates)
                .with_detail("ContainerCheckpoint", criu.reason())
                .with_host(
                    crius_spec::HostInfo::probe()
                        .map(|h| h.cgroup_v2)
                        .unwrap_or(false),
                );
            if json {
                println!("{}", serde_json::to_string_pretty(&gates.report())?);
            } else {
                print!("{}", crius::features::render(&gates));
            }
            Ok(())
        })(),
        Cmd::Version => {
            println!(
                "crius {} (CRI {})",
                crius::runtime::RUNTIME_VERSION,
                crius::runtime::CRI_VERSION
            );
            Ok(())
        }
        Cmd::Config {
            cmd: ConfigCmd::Default,
        } => {
            print!("{}", crius::default_config::render());
            Ok(())
        }
        Cmd::ApparmorProfile => {
            print!(
                "{}",
                crius::apparmor::default_profile(crius::apparmor::DEFAULT_PROFILE)
            );
            Ok(())
        }
        Cmd::Image {
            cmd: ImageCmd::Import { file, socket },
        } => import(file, socket),
        Cmd::Debug {
            cmd: DebugCmd::CrashPoints,
        } => {
            for (name, what) in crius::crash::POINTS {
                println!("{name}\t{what}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(args: DaemonArgs) -> anyhow::Result<()> {
    // Before any thread: glibc sizes its arenas on first use per thread.
    crius::memory::tune_allocator();
    let cfg = args.config()?;
    let log = crius::logging::init(&cfg.log_level, cfg.log_format)?;
    crius::crash::arm_from_env()?;
    // SIGHUP reads the same file with the same flags on top.
    let reloader =
        crius::reload::Reloader::new(cfg.clone(), Some(log), Box::new(move || args.config()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(crius::daemon::run_with(cfg, Some(reloader)))
}

/// `crius features --handlers`: the daemon's per-handler feature matrix (verbose Status).
fn handler_features(socket: PathBuf, json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let channel = crius::client::connect(&socket).await?;
        let mut client = cri_api::v1::runtime_service_client::RuntimeServiceClient::new(channel);
        let resp = client
            .status(cri_api::v1::StatusRequest { verbose: true })
            .await
            .map_err(|s| anyhow::anyhow!("Status from {}: {}", socket.display(), s.message()))?
            .into_inner();
        let text = resp.info.get("runtimeHandlers").ok_or_else(|| {
            anyhow::anyhow!(
                "{} sent no runtimeHandlers in its verbose Status",
                socket.display()
            )
        })?;
        let handlers: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&handlers)?);
        } else {
            print!("{}", crius::handler_features::render(&handlers));
        }
        Ok(())
    })
}

fn import(file: PathBuf, socket: PathBuf) -> anyhow::Result<()> {
    let file =
        std::fs::canonicalize(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let channel = crius::client::connect(&socket).await?;
        let mut client = cri_api::admin::admin_client::AdminClient::new(channel);
        let resp = client
            .import_image(cri_api::admin::ImportImageRequest {
                path: file.display().to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("import {}: {}", file.display(), s.message()))?
            .into_inner();
        for (r, id) in resp.references.iter().zip(
            resp.image_ids
                .iter()
                .chain(std::iter::repeat(&String::new())),
        ) {
            println!("{r}\t{id}");
        }
        Ok(())
    })
}
