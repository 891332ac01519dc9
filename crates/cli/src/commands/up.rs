//! `newsrec up`: ingest and/or serve (`--role`) on one node until SIGINT/SIGTERM, then a
//! graceful stop.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use newsrec_config::Config;

use crate::node::{Node, NodeOptions, Role};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Address to listen on (default: serve.listen of the config, 127.0.0.1:8080)
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Which stages this node runs: all, ingest or serve (split roles share the real-time
    /// signals through signals.share)
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
}

pub async fn run(config: Config, data_dir: &Path, args: UpArgs) -> anyhow::Result<()> {
    let listen = match args.listen {
        Some(listen) => listen,
        None => config.serve.listen.parse().context("serve.listen")?,
    };
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let options = NodeOptions {
        config,
        data_dir: data_dir.to_owned(),
        metrics: Some(Arc::new(move || prometheus.render())),
        role: args.role,
    };
    let node = Node::start(options, listener).await?;
    eprintln!(
        "newsrec is up on http://{} (data in {}); Ctrl-C stops it",
        node.addr(),
        data_dir.display()
    );
    shutdown_signal().await;
    eprintln!("stopping: finishing in-flight requests and flushing ingest buffers");
    node.shutdown().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
