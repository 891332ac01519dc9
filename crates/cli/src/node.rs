//! One node running ingest and serve on one listener (`newsrec up`), startable in-process.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use axum::http::{HeaderValue, Method, header};
use newsrec_config::Config;
use newsrec_event::{ClickEvent, EventType};
use newsrec_ingest::AcceptedHook;
use newsrec_ingest::{BatchLimits, BatcherTask, IngestState, spawn_batcher};
use newsrec_kv::RecStore;
use newsrec_lake::Lake;
use newsrec_serve::{
    Guard, MetricsRender, ServeState,
    articles::ArticleRegistry,
    auth::{ApiKeys, require_key},
    history::{HistoryLimits, ReadHistory},
    shed::Shedder,
    spawn_refresher,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tower_http::cors::CorsLayer;

use crate::settings::{open_lake, open_store};

/// What a node is started with.
#[derive(Clone)]
pub struct NodeOptions {
    pub config: Config,
    pub data_dir: PathBuf,
    pub metrics: Option<MetricsRender>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    lake: Lake,
    store: Arc<dyn RecStore>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    batcher: BatcherTask,
    refresher: JoinHandle<()>,
}

impl Node {
    /// Starts ingest + serve on `listener` (bind port 0 in tests).
    pub async fn start(options: NodeOptions, listener: TcpListener) -> anyhow::Result<Node> {
        let config = &options.config;
        let lake = open_lake(config, &options.data_dir)?;
        let store = open_store(config, &options.data_dir).await?;
        let limits = BatchLimits {
            max_events: config.ingest.batch_max_events,
            max_bytes: config.ingest.batch_max_bytes,
            max_age: Duration::from_millis(config.ingest.batch_max_age_ms),
        };
        let (batcher_handle, batcher) = spawn_batcher(lake.clone(), config.node_id.clone(), limits);
        let serve_config = &config.serve;
        let history = Arc::new(ReadHistory::new(HistoryLimits {
            max_users: serve_config.history_max_users,
            max_reads_per_user: serve_config.history_reads_per_user,
            ttl_ms: i64::from(serve_config.history_ttl_hours) * 3_600_000,
        }));
        let max_age_ms = i64::from(serve_config.article_max_age_hours) * 3_600_000;
        let articles = Arc::new(
            ArticleRegistry::open(&options.data_dir.join("serve"), max_age_ms)
                .context("opening the article registry")?,
        );
        let (hook_history, hook_articles) = (Arc::clone(&history), Arc::clone(&articles));
        let on_accepted: AcceptedHook = Arc::new(move |events: &[ClickEvent]| {
            for event in events
                .iter()
                .filter(|event| event.event_type == EventType::Click)
            {
                hook_history.record(&event.user_id, &event.article_id, event.ts_ms);
                hook_articles.observe_click(&event.article_id, event.ts_ms);
            }
        });
        let mut ingest = newsrec_ingest::router(IngestState {
            batcher: batcher_handle,
            max_body_bytes: config.ingest.max_body_bytes,
            max_records_per_request: config.ingest.max_records_per_request,
            on_accepted: Some(on_accepted),
        })
        .route_layer(axum::middleware::from_fn_with_state(
            ApiKeys::new(config.ingest.write_keys.clone()),
            require_key,
        ));
        if !config.ingest.cors_origins.is_empty() {
            let origins: Vec<HeaderValue> = config
                .ingest
                .cors_origins
                .iter()
                .map(|origin| HeaderValue::from_str(origin))
                .collect::<Result<_, _>>()
                .context("ingest.cors_origins")?;
            ingest = ingest.layer(
                CorsLayer::new()
                    .allow_origin(origins)
                    .allow_methods([Method::POST])
                    .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
            );
        }
        if serve_config.admin_keys.is_empty() {
            tracing::warn!(
                "serve.admin_keys is empty: anyone who can reach this node can register articles"
            );
        }
        if serve_config.api_keys.is_empty() {
            tracing::warn!(
                "serve.api_keys is empty: recommendation routes are open to anyone who can reach this node"
            );
        }
        let guard = Guard {
            keys: ApiKeys::new(serve_config.api_keys.clone()),
            admin_keys: ApiKeys::new(serve_config.admin_keys.clone()),
            shedder: Shedder::new(
                serve_config.max_in_flight,
                Duration::from_millis(serve_config.queue_budget_ms),
            ),
        };
        let serve = newsrec_serve::router(
            ServeState {
                store: Arc::clone(&store),
                default_k: serve_config.default_k,
                max_k: serve_config.max_k,
                metrics: options.metrics.clone(),
                history: Some(history),
                articles: Some(articles),
            },
            guard,
        );
        let refresher = spawn_refresher(
            Arc::clone(&store),
            Duration::from_millis(serve_config.refresh_interval_ms),
        );
        let app = ingest.merge(serve);
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, lake = lake.uri(), "node listening");
        Ok(Node {
            addr,
            lake,
            store,
            stop,
            server,
            batcher,
            refresher,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn store(&self) -> &Arc<dyn RecStore> {
        &self.store
    }

    /// Stops accepting requests, lets in-flight ones finish (their events are written and
    /// acknowledged), flushes the ingest buffer, and stops.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        self.batcher.shutdown().await;
        self.refresher.abort();
        Ok(())
    }
}
