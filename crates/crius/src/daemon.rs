//! Daemon start-up and shutdown: recover state, start the streaming server, serve gRPC until SIGTERM or
//! SIGINT. Shutdown leaves containers running: their monitors own them.

use std::sync::Arc;

use crate::config::Config;
use crate::runtime::Runtime;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen.clone();
    let streaming_address = cfg.streaming_address;
    let rt = Runtime::new(cfg).await?;
    crate::streaming::start(&rt, streaming_address).await?;
    let listener = crate::server::bind(&listen)?;
    tracing::info!(
        "crius {} serving the CRI on {}",
        crate::runtime::RUNTIME_VERSION,
        listen.display()
    );
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return std::future::pending().await;
                }
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down; containers keep running");
    };
    crate::server::serve(Arc::clone(&rt), listener, shutdown).await?;
    let _ = std::fs::remove_file(&listen);
    Ok(())
}
