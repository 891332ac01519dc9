//! One node running ingest and/or serve on one listener (`newsrec up [--role]`), startable
//! in-process. With `signals.share` set, acked clicks travel through a Redis stream
//! (`newsrec-feed`) to every serving node; otherwise ingest feeds this node's signals directly.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context;
use axum::http::{HeaderValue, Method, header};
use newsrec_config::Config;
use newsrec_event::{ClickEvent, EventType};
use newsrec_feed::{Click, FeedPublisher, FeedSettings, FeedSubscriber, StartAt};
use newsrec_ingest::AcceptedHook;
use newsrec_ingest::{IngestHandle, IngestState, PipelineTask};
use newsrec_lake::Lake;
use newsrec_serve::{
    Guard, MetricsRender, ServeState,
    articles::ArticleRegistry,
    auth::{ApiKeys, require_key},
    shed::Shedder,
    spawn_refresher,
};
use newsrec_signals::Signals;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tower_http::cors::CorsLayer;

use crate::settings::{open_lake, open_store};

/// Which stages a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Ingest and serve on one listener (signals in-process, or shared when `signals.share` is set).
    #[default]
    All,
    /// Only the clickstream endpoints; acked clicks go to the lake and to the shared signals.
    Ingest,
    /// Only the serving API; signals come from the shared feed (`signals.share` is required).
    Serve,
}

/// What a node is started with.
#[derive(Clone)]
pub struct NodeOptions {
    pub config: Config,
    pub data_dir: PathBuf,
    pub metrics: Option<MetricsRender>,
    pub role: Role,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The ingest half of a running node.
#[derive(Debug)]
struct IngestPart {
    pipeline: PipelineTask,
    handle: IngestHandle,
    feed: Option<Arc<FeedPublisher>>,
}

/// The serving half of a running node.
#[derive(Debug)]
struct ServePart {
    signals: Arc<Signals>,
    refresher: JoinHandle<()>,
    _subscriber: Option<FeedSubscriber>,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    lake: Lake,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    ingest: Option<IngestPart>,
    serve: Option<ServePart>,
}

fn feed_settings(config: &Config) -> FeedSettings {
    FeedSettings {
        redis_url: config.signals.share.clone(),
        stream: config.signals.share_stream.clone(),
        max_len: config.signals.share_max_len,
        ..FeedSettings::default()
    }
}

impl Node {
    /// Starts the node's `role` on `listener` (bind port 0 in tests).
    pub async fn start(options: NodeOptions, listener: TcpListener) -> anyhow::Result<Node> {
        let config = &options.config;
        let role = options.role;
        let shared = !config.signals.share.is_empty();
        if role == Role::Serve && !shared {
            anyhow::bail!(
                "a serve-only node needs signals.share (a redis:// URL the ingest nodes publish clicks to); without it no click would ever reach its signals"
            );
        }
        let lake = open_lake(config, &options.data_dir)?;
        let serving = role != Role::Ingest;
        let signals =
            serving.then(|| Signals::new(config.signals.limits(config.serve.history_limits())));
        let max_age_ms = config.serve.article_max_age_ms();
        let articles = if serving {
            Some(Arc::new(
                ArticleRegistry::open(&options.data_dir.join("serve"), max_age_ms)
                    .context("opening the article registry")?,
            ))
        } else {
            None
        };
        // With a shared feed every serving node (this one included) applies clicks from the
        // feed only, so each click counts once everywhere.
        let subscriber = match (&signals, shared) {
            (Some(signals), true) => {
                let (signals, articles) = (Arc::clone(signals), articles.clone());
                let apply: newsrec_feed::ApplyClicks = Arc::new(move |clicks: &[Click]| {
                    for click in clicks {
                        newsrec_serve::observe_click(
                            &signals,
                            articles.as_deref(),
                            &click.user_id,
                            &click.article_id,
                            click.ts_ms,
                        );
                    }
                });
                Some(
                    FeedSubscriber::start(feed_settings(config), StartAt::Beginning, apply)
                        .await
                        .context("subscribing to the shared signals feed (signals.share)")?,
                )
            }
            _ => None,
        };
        let mut app = axum::Router::new();
        let ingest = if role != Role::Serve {
            let feed = if shared {
                Some(Arc::new(
                    FeedPublisher::connect(feed_settings(config))
                        .await
                        .context("connecting to the shared signals feed (signals.share)")?,
                ))
            } else {
                None
            };
            let local = if shared {
                None
            } else {
                signals.clone().zip(articles.clone())
            };
            let (router, part) = start_ingest(config, &options, lake.clone(), feed, local).await?;
            app = app.merge(router);
            Some(part)
        } else {
            None
        };
        let serve = if let Some(signals) = signals {
            let store = open_store(config, &options.data_dir, true).await?;
            let serve_config = &config.serve;
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
            app = app.merge(newsrec_serve::router(
                ServeState {
                    store: Arc::clone(&store),
                    default_k: serve_config.default_k,
                    max_k: serve_config.max_k,
                    metrics: options.metrics.clone(),
                    signals: Some(Arc::clone(&signals)),
                    blend: serve_config.blend,
                    articles,
                },
                guard,
            ));
            let refresher = spawn_refresher(
                Arc::clone(&store),
                Duration::from_millis(serve_config.refresh_interval_ms),
            );
            Some(ServePart {
                signals,
                refresher,
                _subscriber: subscriber,
            })
        } else {
            None
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, ?role, lake = lake.uri(), shared_signals = shared, "node listening");
        Ok(Node {
            addr,
            lake,
            stop,
            server,
            ingest,
            serve,
        })
    }

    /// The node's real-time signals (serving roles).
    pub fn signals(&self) -> Option<&Arc<Signals>> {
        self.serve.as_ref().map(|serve| &serve.signals)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Waits until every acknowledged event is in a committed lake object (the buffer has been
    /// flushed), or `timeout` passes. True when it got there.
    pub async fn wait_until_committed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let backlog = self.ingest.as_ref().map_or(0, |ingest| {
                ingest.handle.stats().backlog_bytes.load(Ordering::Acquire)
            });
            if backlog == 0 {
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
        if let Some(ingest) = self.ingest {
            ingest.pipeline.shutdown().await;
            if let Some(feed) = ingest.feed
                && !feed.flush(Duration::from_secs(5)).await
            {
                tracing::warn!(
                    "some acked clicks did not reach the shared signals feed before the stop (they are in the lake)"
                );
            }
        }
        if let Some(serve) = self.serve {
            serve.refresher.abort();
        }
        Ok(())
    }
}

/// Starts the write-ahead log, the lake writer and the ingest routes. Acked clicks go to
/// `local` signals (in-process) and/or the shared `feed`.
async fn start_ingest(
    config: &Config,
    options: &NodeOptions,
    lake: Lake,
    feed: Option<Arc<FeedPublisher>>,
    local: Option<(Arc<Signals>, Arc<ArticleRegistry>)>,
) -> anyhow::Result<(axum::Router, IngestPart)> {
    let wal_dir = if config.ingest.wal_dir.is_empty() {
        options.data_dir.join("wal")
    } else {
        PathBuf::from(&config.ingest.wal_dir)
    };
    let pipeline_options = config
        .ingest
        .pipeline_options(config.node_id.clone(), wal_dir.clone());
    let (handle, pipeline, replay) = newsrec_ingest::start(lake, pipeline_options)
        .await
        .with_context(|| format!("starting ingest (write-ahead log in {})", wal_dir.display()))?;
    if replay.redone_records > 0 || replay.truncated_bytes > 0 {
        tracing::warn!(
            records = replay.redone_records,
            events = replay.redone_events,
            refused_records = replay.redone_errors,
            torn_tail_bytes = replay.truncated_bytes,
            "write-ahead log replayed: the last run did not stop cleanly"
        );
    }
    let hook_feed = feed.clone();
    let on_accepted: AcceptedHook = Arc::new(move |events: &[ClickEvent]| {
        let clicks = events
            .iter()
            .filter(|event| event.event_type == EventType::Click);
        if let Some((signals, articles)) = &local {
            for event in clicks.clone() {
                newsrec_serve::observe_click(
                    signals,
                    Some(articles),
                    &event.user_id,
                    &event.article_id,
                    event.ts_ms,
                );
            }
        }
        if let Some(feed) = &hook_feed {
            let clicks: Vec<Click> = clicks
                .map(|event| Click {
                    user_id: event.user_id.clone(),
                    article_id: event.article_id.clone(),
                    ts_ms: event.ts_ms,
                })
                .collect();
            feed.publish(&clicks);
        }
    });
    let mut router = newsrec_ingest::router(IngestState {
        pipeline: handle.clone(),
        node_id: config.node_id.clone(),
        ack: config.ingest.ack,
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
        router = router.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        );
    }
    Ok((
        router,
        IngestPart {
            pipeline,
            handle,
            feed,
        },
    ))
}
