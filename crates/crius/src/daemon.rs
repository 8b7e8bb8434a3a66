//! Daemon start-up and shutdown: recover state, start the streaming server, serve gRPC until SIGTERM or
//! SIGINT. Shutdown leaves containers running: their monitors own them.

use std::sync::Arc;

use crate::config::Config;
use crate::runtime::Runtime;

/// How long in-flight calls may run after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    run_with(cfg, None).await
}

/// Runs the daemon; with a reloader, SIGHUP reads the config again (see `reload`).
pub async fn run_with(
    cfg: Config,
    reloader: Option<crate::reload::Reloader>,
) -> anyhow::Result<()> {
    let listen = cfg.listen.clone();
    let streaming = crius_streaming::Config {
        address: cfg.streaming_address,
        idle_timeout: cfg.stream_idle_timeout(),
        max_sessions: cfg.max_streaming_sessions,
        ..Default::default()
    };
    let rt = Runtime::new(cfg).await?;
    if let Some(mut reloader) = reloader {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("listen for SIGHUP: {e}"))?;
        let rt = Arc::clone(&rt);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                reloader.reload(&rt);
            }
        });
    }
    crate::streaming::start(&rt, streaming).await?;
    crate::memory::spawn_trimmer();
    if let Some(url) = &rt.cfg.tracing_endpoint {
        crate::metrics::trace::init(url)?;
    }
    if let Some(addr) = rt.cfg.metrics_address {
        crate::metrics::http::start(&rt, addr).await?;
    }
    let listener = crate::server::bind(&listen)?;
    tracing::info!(
        "crius {} serving the CRI on {}",
        crate::runtime::RUNTIME_VERSION,
        listen.display()
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down; containers keep running");
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let shutdown = async move {
        let _ = graceful.wait_for(|s| *s).await;
    };
    let server = crate::server::serve(Arc::clone(&rt), listener, shutdown);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        // Long-lived streams (GetContainerEvents, a hung client) must not hold the daemon up: after the
        // signal, in-flight calls get a bounded grace period.
        _ = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("calls still open {SHUTDOWN_GRACE:?} after the stop signal; exiting anyway"),
    }
    // Native network teardowns finish their background half (veth pairs, reservations) rather than
    // leave it to the next start's cleanup.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, rt.cni.settle()).await;
    let _ = std::fs::remove_file(&listen);
    Ok(())
}
