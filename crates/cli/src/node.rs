//! One node running ingest and serve on one listener (`newsrec up`), startable in-process.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context;
use axum::http::{HeaderValue, Method, header};
use newsrec_config::AckSetting;
use newsrec_config::Config;
use newsrec_event::{ClickEvent, EventType};
use newsrec_ingest::AcceptedHook;
use newsrec_ingest::{AckMode, IngestHandle, IngestState, PipelineOptions, PipelineTask};
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
use newsrec_wal::WalOptions;
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
    pipeline: PipelineTask,
    ingest: IngestHandle,
    refresher: JoinHandle<()>,
}

impl Node {
    /// Starts ingest + serve on `listener` (bind port 0 in tests).
    pub async fn start(options: NodeOptions, listener: TcpListener) -> anyhow::Result<Node> {
        let config = &options.config;
        let lake = open_lake(config, &options.data_dir)?;
        let store = open_store(config, &options.data_dir).await?;
        let wal_dir = if config.ingest.wal_dir.is_empty() {
            options.data_dir.join("wal")
        } else {
            PathBuf::from(&config.ingest.wal_dir)
        };
        let pipeline_options = PipelineOptions {
            node_id: config.node_id.clone(),
            wal_dir: wal_dir.clone(),
            wal: WalOptions::default(),
            buffer_bytes: u64::from(config.ingest.buffer_size_mib) << 20,
            buffer_interval: Duration::from_secs(u64::from(config.ingest.buffer_interval_s)),
            max_backlog_bytes: u64::from(config.ingest.max_backlog_mib) << 20,
        };
        let (pipeline_handle, pipeline, replay) =
            newsrec_ingest::start(lake.clone(), pipeline_options)
                .await
                .with_context(|| {
                    format!("starting ingest (write-ahead log in {})", wal_dir.display())
                })?;
        if replay.redone_records > 0 || replay.truncated_bytes > 0 {
            tracing::warn!(
                records = replay.redone_records,
                events = replay.redone_events,
                refused_records = replay.redone_errors,
                torn_tail_bytes = replay.truncated_bytes,
                "write-ahead log replayed: the last run did not stop cleanly"
            );
        }
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
            pipeline: pipeline_handle.clone(),
            node_id: config.node_id.clone(),
            ack: match config.ingest.ack {
                AckSetting::Wal => AckMode::Wal,
                AckSetting::Lake => AckMode::Lake,
                AckSetting::None => AckMode::None,
            },
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
            pipeline,
            ingest: pipeline_handle,
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

    /// Waits until every acknowledged event is in a committed lake object (the buffer has been
    /// flushed), or `timeout` passes. True when it got there.
    pub async fn wait_until_committed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ingest.stats().backlog_bytes.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting requests, lets in-flight ones finish (their events are written and
    /// acknowledged), flushes the ingest buffer, and stops.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        self.pipeline.shutdown().await;
        self.refresher.abort();
        Ok(())
    }
}
