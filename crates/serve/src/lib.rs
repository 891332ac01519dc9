//! The serving API: recommendations per user from the current generation of the store.
//!
//! Consumes a [`RecStore`] (never the models or the training code: serving only reads what
//! `publish` wrote); produces `GET /v1/users/{user_id}/recommendations?k=&exclude=` answers,
//! `/healthz`, and `/metrics` when given a renderer. Users without a list, or whose list runs
//! short after exclusions, get the generation's fallback (popularity) list, and every item says
//! which it came from. A background refresher picks up generations published by other processes.
//! Every error reply, of the routes and of the key and shedding middleware, is made by [`error`].

pub mod articles;
pub mod auth;
pub mod blend;
pub mod error;
mod settings;
pub mod shed;

pub use blend::Blend;
pub use error::{ServeError, StoreError, StoreFailure};
pub use settings::{Settings, SettingsError};

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use newsrec_event::{MAX_ID_BYTES, validate_id};
use newsrec_kv::{Generation, KvError, RecStore};
use newsrec_signals::Signals;
use serde::{Deserialize, Serialize};

/// Renders the Prometheus exposition text.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Most ids accepted in `exclude`.
const MAX_EXCLUDE: usize = 1_000;

/// What the serving routes need.
#[derive(Clone)]
pub struct ServeState {
    pub store: Arc<dyn RecStore>,
    pub default_k: usize,
    pub max_k: usize,
    pub metrics: Option<MetricsRender>,
    /// Real-time signals (trending, co-visitation, recent reads) fed by ingest; recent reads
    /// are filtered out of every list.
    pub signals: Option<Arc<Signals>>,
    /// How lists blend the daily list with the signals.
    pub blend: Blend,
    /// Article metadata: expired articles are never served; newest articles end the fallback chain.
    pub articles: Option<Arc<articles::ArticleRegistry>>,
}

/// What guards the recommendation routes.
#[derive(Debug, Clone)]
pub struct Guard {
    pub keys: auth::ApiKeys,
    /// Keys for the admin routes (article registration).
    pub admin_keys: auth::ApiKeys,
    pub shedder: shed::Shedder,
}

impl std::fmt::Debug for ServeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeState")
            .field("store", &self.store)
            .field("default_k", &self.default_k)
            .field("max_k", &self.max_k)
            .finish()
    }
}

/// Where a recommended item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The user's list from the daily model.
    Daily,
    /// Clicked most right now (decayed clicks).
    Trending,
    /// Read next by readers of the user's last reads.
    Covisit,
    /// The generation's decayed-popularity list.
    Fallback,
    /// Newest registered articles, when both lists run short.
    Latest,
    /// Co-occurrence neighbours of an article (`/v1/articles/{id}/similar`).
    Similar,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub article_id: String,
    pub score: f32,
    pub source: Source,
}

/// The answer of the recommendations route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub user_id: String,
    pub generation: Generation,
    /// `daily` when the user has a list in this generation, else `fallback`.
    pub source: Source,
    pub items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct RecommendationQuery {
    k: Option<usize>,
    /// Comma-separated article ids not to return.
    exclude: Option<String>,
}

/// The serving routes: recommendations behind the API keys and the load shedder; `/healthz`
/// and `/metrics` open, so probes and scrapers work even when the node sheds load.
pub fn router(state: ServeState, guard: Guard) -> Router {
    let guarded = Router::new()
        .route("/v1/users/{user_id}/recommendations", get(recommendations))
        .route("/v1/articles/{article_id}/similar", get(similar_articles))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.keys,
            auth::require_key,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.shedder,
            shed::shed_load,
        ));
    let admin = Router::new()
        .route("/v1/articles", axum::routing::put(register_articles))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.admin_keys,
            auth::require_key,
        ));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .merge(guarded)
        .merge(admin)
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct SimilarQuery {
    k: Option<usize>,
}

/// The answer of the similar-articles route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarArticles {
    pub article_id: String,
    pub generation: Generation,
    pub items: Vec<Item>,
}

/// `GET /v1/articles/{article_id}/similar?k=`: the co-occurrence neighbours of an article from
/// the current generation, never an expired one; 404 when the article has no list.
async fn similar_articles(
    State(state): State<ServeState>,
    Path(article_id): Path<String>,
    Query(query): Query<SimilarQuery>,
) -> Result<Response, ServeError> {
    validate_id("article_id", &article_id)?;
    let k = query.k.unwrap_or(state.default_k);
    if k == 0 || k > state.max_k {
        return Err(ServeError::BadRequest(format!(
            "k must be 1..={}, got {k}",
            state.max_k
        )));
    }
    let Some(list) = state.store.similar_list(&article_id).await? else {
        return Err(ServeError::NotFound(format!(
            "no similar articles known for {article_id:?} in the current generation"
        )));
    };
    let now_ms = state.signals.as_ref().map_or(0, |s| s.watermark_ms());
    let items = list
        .items
        .into_iter()
        .filter(|item| {
            !state
                .articles
                .as_ref()
                .is_some_and(|r| r.is_expired(&item.article_id, now_ms))
        })
        .take(k)
        .map(|item| Item {
            article_id: item.article_id,
            score: item.score,
            source: Source::Similar,
        })
        .collect();
    let mut response = Json(SimilarArticles {
        article_id,
        generation: list.generation,
        items,
    })
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

/// The checked-in OpenAPI document of every route of a node (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Most articles accepted in one registration request.
const MAX_ARTICLES_PER_REQUEST: usize = 10_000;

/// `PUT /v1/articles`: a JSON array of `{article_id, published_at, category?, expires_at?}`
/// (times as RFC 3339 or epoch milliseconds). Valid records are kept; each refused one is
/// reported with its index and reason.
async fn register_articles(
    State(state): State<ServeState>,
    body: axum::body::Bytes,
) -> Result<Response, ServeError> {
    let Some(registry) = &state.articles else {
        return Err(ServeError::BadRequest(
            "this node keeps no article registry".into(),
        ));
    };
    let records: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|error| {
        ServeError::BadRequest(format!("body must be a JSON array of articles: {error}"))
    })?;
    if records.len() > MAX_ARTICLES_PER_REQUEST {
        return Err(ServeError::BadRequest(format!(
            "{} articles in one request, at most {MAX_ARTICLES_PER_REQUEST}",
            records.len()
        )));
    }
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match article_from_json(record) {
            Ok(meta) => accepted.push(meta),
            Err(reason) => rejected.push(serde_json::json!({ "index": index, "reason": reason })),
        }
    }
    let registered = accepted.len();
    let registry = Arc::clone(registry);
    tokio::task::spawn_blocking(move || registry.register(accepted))
        .await
        .map_err(|join| ServeError::Internal(format!("registering articles: {join}")))?
        .map_err(|error| ServeError::Internal(error.to_string()))?;
    let status = if registered == 0 && !rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "registered": registered, "rejected": rejected })),
    )
        .into_response())
}

fn article_from_json(record: &serde_json::Value) -> Result<articles::ArticleMeta, String> {
    let object = record
        .as_object()
        .ok_or("field \"record\": expected a JSON object")?;
    let article_id = match object.get("article_id") {
        Some(serde_json::Value::String(id)) => id.clone(),
        Some(other) => {
            return Err(format!(
                "field \"article_id\": expected a string, got {other}"
            ));
        }
        None => return Err("field \"article_id\": is required but missing".into()),
    };
    validate_id("article_id", &article_id).map_err(|error| error.to_string())?;
    let time = |field: &'static str| -> Result<Option<i64>, String> {
        match object.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(number)) => number.as_i64().map(Some).ok_or_else(|| {
                format!("field \"{field}\": expected RFC 3339 or epoch millis, got {number}")
            }),
            Some(serde_json::Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|time| Some(time.timestamp_millis()))
                .map_err(|_| {
                    format!("field \"{field}\": expected RFC 3339 or epoch millis, got {text:?}")
                }),
            Some(other) => Err(format!(
                "field \"{field}\": expected RFC 3339 or epoch millis, got {other}"
            )),
        }
    };
    let published_ms = time("published_at")?;
    let expires_ms = time("expires_at")?;
    let category = match object.get("category") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(category)) if category.len() <= MAX_ID_BYTES => {
            Some(category.clone())
        }
        Some(other) => {
            return Err(format!(
                "field \"category\": expected a string of at most {MAX_ID_BYTES} bytes, got {other}"
            ));
        }
    };
    Ok(articles::ArticleMeta {
        article_id,
        published_ms,
        category,
        expires_ms,
    })
}

/// Polls the store for a newly activated generation every `interval`, until the task is aborted.
pub fn spawn_refresher(
    store: Arc<dyn RecStore>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.refresh().await {
                Ok(true) => {
                    if let Ok(Some(info)) = store.current().await {
                        tracing::info!(generation = info.generation, run_id = %info.run_id, users = info.users, "serving new generation");
                        metrics::gauge!("newsrec_serve_generation").set(info.generation as f64);
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "store refresh failed; still serving the previous generation")
                }
            }
        }
    })
}

async fn recommendations(
    State(state): State<ServeState>,
    Path(user_id): Path<String>,
    Query(query): Query<RecommendationQuery>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    validate_id("user_id", &user_id)?;
    let k = query.k.unwrap_or(state.default_k);
    if k == 0 || k > state.max_k {
        return Err(ServeError::BadRequest(format!(
            "k must be 1..={}, got {k}",
            state.max_k
        )));
    }
    let exclude: Vec<&str> = query
        .exclude
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|id| !id.is_empty())
        .collect();
    if exclude.len() > MAX_EXCLUDE {
        return Err(ServeError::BadRequest(format!(
            "exclude holds {} ids, at most {MAX_EXCLUDE}",
            exclude.len()
        )));
    }
    let answer = recommend(&state, &user_id, k, &exclude, &state.blend).await?;
    metrics::counter!("newsrec_serve_requests_total", "source" => if answer.source == Source::Daily { "daily" } else { "fallback" }).increment(1);
    metrics::histogram!("newsrec_serve_seconds").record(started.elapsed().as_secs_f64());
    let mut response = Json(answer).into_response();
    // Lists move with every click the node sees; a short private cache still spares a burst of
    // page views by the same reader.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=5"),
    );
    Ok(response)
}

/// Why [`recommend`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("no generation is published yet")]
    NothingPublished,
    #[error("store read failed: {0}")]
    Store(#[from] KvError),
}

/// The list of `user_id`: the blend of its daily list and the node's real-time signals, then
/// the generation's fallback list, then the newest registered articles; never an article in
/// `exclude`, read by the user (as far as the signals saw), or expired. The HTTP route and the
/// replay evaluation both call this.
pub async fn recommend(
    state: &ServeState,
    user_id: &str,
    k: usize,
    exclude: &[&str],
    blend: &Blend,
) -> Result<Recommendations, RecommendError> {
    let signals = state.signals.as_deref();
    // Articles read since the last training are not in the list's exclusions yet.
    let recent_reads = signals.map(|s| s.recent_reads(user_id)).unwrap_or_default();
    let mut excluded: HashSet<&str> = exclude.iter().copied().collect();
    excluded.extend(recent_reads.iter().map(|(id, _)| id.as_str()));
    // Serving time is event time: the newest click this node has seen (see `articles`).
    let now_ms = signals.map_or(0, |s| s.watermark_ms());
    let registry = state.articles.as_deref();
    let keep = |article_id: &str| {
        !excluded.contains(article_id)
            && !registry.is_some_and(|r| r.is_expired(article_id, now_ms))
    };
    let personal = state.store.user_list(user_id).await?;
    let source = if personal.is_some() {
        Source::Daily
    } else {
        Source::Fallback
    };
    let mut generation = personal.as_ref().map(|list| list.generation);
    // The sources outlive the candidates, which borrow their ids.
    let trending = match signals {
        Some(signals) if blend.trending_weight > 0.0 => Some(signals.trending()),
        _ => None,
    };
    let per_seed: Vec<blend::Neighbourhood> = match signals {
        Some(signals) if blend.covisit_weight > 0.0 && blend.covisit_seeds > 0 => {
            // Only reads of the current visit say what the reader is after now; older ones
            // would pull yesterday's neighbours over today's news.
            let window_ms = signals.limits().covisit.window_ms;
            recent_reads
                .iter()
                .rev()
                .take_while(|(_, at)| now_ms - at <= window_ms)
                .take(blend.covisit_seeds)
                .map(|(seed, _)| signals.covisit_neighbourhood(seed, blend.covisit_candidates))
                .collect()
        }
        _ => Vec::new(),
    };
    let mut candidates = blend::Candidates::default();
    if let Some(list) = &personal
        && blend.daily_weight > 0.0
    {
        candidates.add_daily(list.items.iter().map(|item| item.article_id.as_str()));
    }
    if let Some(trending) = &trending {
        let n = blend.trending_candidates.min(trending.items.len());
        candidates.add_trending(&trending.items[..n]);
    }
    candidates.add_covisit(&per_seed, blend);
    let mut items = candidates.rank(blend, k, keep);
    // A user without a list still needs the generation's fallback: it says what is published.
    if items.len() < k || generation.is_none() {
        let fallback = state
            .store
            .fallback_list()
            .await?
            .ok_or(RecommendError::NothingPublished)?;
        generation.get_or_insert(fallback.generation);
        take_into(&mut items, fallback.items, Source::Fallback, k, &keep);
    }
    if items.len() < k
        && let Some(registry) = registry
    {
        let latest = registry
            .latest(now_ms, k + excluded.len())
            .into_iter()
            .map(|meta| newsrec_kv::RecItem {
                article_id: meta.article_id,
                score: 0.0,
            })
            .collect();
        take_into(&mut items, latest, Source::Latest, k, &keep);
    }
    let generation = generation.ok_or(RecommendError::NothingPublished)?;
    Ok(Recommendations {
        user_id: user_id.to_owned(),
        generation,
        source,
        items,
    })
}

/// What a node does with each acked click: feeds the real-time signals and the article
/// registry's first-click times. Ingest's hook and the replay evaluation both call it.
pub fn observe_click(
    signals: &Signals,
    articles: Option<&articles::ArticleRegistry>,
    user_id: &str,
    article_id: &str,
    ts_ms: i64,
) {
    signals.observe(user_id, article_id, ts_ms);
    if let Some(articles) = articles {
        articles.observe_click(article_id, ts_ms);
    }
}

fn take_into(
    items: &mut Vec<Item>,
    candidates: Vec<newsrec_kv::RecItem>,
    source: Source,
    k: usize,
    keep: &dyn Fn(&str) -> bool,
) {
    for candidate in candidates {
        if items.len() >= k {
            break;
        }
        if !keep(&candidate.article_id)
            // Lists are short (k <= max_k): a scan beats hashing and cloning every id.
            || items.iter().any(|item| item.article_id == candidate.article_id)
        {
            continue;
        }
        items.push(Item {
            article_id: candidate.article_id,
            score: candidate.score,
            source,
        });
    }
}

async fn healthz(State(state): State<ServeState>) -> Result<Response, ServeError> {
    let current = state
        .store
        .current()
        .await
        .map_err(|error| ServeError::Unhealthy(error.into()))?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "generation": current.as_ref().map(|info| info.generation),
        "run_id": current.as_ref().map(|info| info.run_id.clone()),
        // Lists are served while the cache warms, only slower: a load balancer may wait.
        "warming": state.store.warming(),
    }))
    .into_response())
}

async fn render_metrics(State(state): State<ServeState>) -> Result<Response, ServeError> {
    let Some(render) = &state.metrics else {
        return Err(ServeError::NotFound(
            "metrics are not enabled on this node".into(),
        ));
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use newsrec_kv::{EmbeddedStore, conformance};
    use newsrec_signals::SignalLimits;
    use tower::ServiceExt;

    async fn get(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The routes over `store` with no keys, no signals and no registry, k 3 of at most 10.
    fn open_app(store: Arc<dyn RecStore>) -> Router {
        let guard = Guard {
            keys: auth::ApiKeys::default(),
            admin_keys: auth::ApiKeys::default(),
            shedder: shed::Shedder::new(64, Duration::from_millis(50)),
        };
        let state = ServeState {
            store,
            default_k: 3,
            max_k: 10,
            metrics: None,
            signals: None,
            blend: Blend::default(),
            articles: None,
        };
        router(state, guard)
    }

    #[tokio::test]
    async fn personalized_fallback_exclusions_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let app = open_app(store.clone());
        let (status, body) = get(&app, "/v1/users/u1/recommendations").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

        conformance::publish(store.as_ref(), "run-1", &[("u1", &["a1", "a2"])]).await;
        let (status, body) = get(&app, "/v1/users/u1/recommendations").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["source"], "daily");
        let ids: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["article_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a1", "a2", "f1"], "topped up from the fallback");
        assert_eq!(body["items"][2]["source"], "fallback");

        let (_, body) = get(&app, "/v1/users/u1/recommendations?k=2&exclude=a1,f9").await;
        let ids: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["article_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a2", "f1"]);

        let (status, body) = get(&app, "/v1/articles/a1/similar?k=1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["items"][0]["article_id"], "a2");
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        let (status, _) = get(&app, "/v1/articles/nope/similar").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, body) = get(&app, "/v1/users/stranger/recommendations").await;
        assert_eq!(body["source"], "fallback");

        let (status, body) = get(&app, "/v1/users/u1/recommendations?k=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "k must be 1..=10, got 0");
        let (status, body) = get(&app, "/v1/users/a%0Ab/recommendations").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"], "user_id must not contain control characters (found one at character 1)",
            "the event contract's rule and wording"
        );
        let long = "x".repeat(newsrec_event::MAX_ID_BYTES + 1);
        let (status, body) = get(&app, &format!("/v1/articles/{long}/similar")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"],
            "article_id is 257 bytes, at most 256 allowed"
        );
        let (status, body) = get(&app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["run_id"], "run-1");
        let (status, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "metrics are not enabled on this node");
    }

    /// Delays every list lookup, to hold requests in flight.
    #[derive(Debug)]
    struct SlowStore(EmbeddedStore);

    #[async_trait::async_trait]
    impl RecStore for SlowStore {
        async fn create_generation(
            &self,
            run_id: &str,
        ) -> Result<Box<dyn newsrec_kv::GenerationWriter>, KvError> {
            self.0.create_generation(run_id).await
        }
        async fn generations(&self) -> Result<Vec<newsrec_kv::GenerationInfo>, KvError> {
            self.0.generations().await
        }
        async fn current(&self) -> Result<Option<newsrec_kv::GenerationInfo>, KvError> {
            self.0.current().await
        }
        async fn activate(&self, generation: Generation) -> Result<(), KvError> {
            self.0.activate(generation).await
        }
        async fn prune(&self, keep: usize) -> Result<Vec<Generation>, KvError> {
            self.0.prune(keep).await
        }
        async fn refresh(&self) -> Result<bool, KvError> {
            self.0.refresh().await
        }
        async fn user_list(
            &self,
            user_id: &str,
        ) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.user_list(user_id).await
        }
        async fn fallback_list(&self) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            self.0.fallback_list().await
        }
        async fn similar_list(
            &self,
            article_id: &str,
        ) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            self.0.similar_list(article_id).await
        }
    }

    /// Fails every call, with an error naming a path a caller must never see.
    #[derive(Debug)]
    struct BrokenStore;

    fn broken() -> KvError {
        KvError::Io {
            path: "/var/lib/newsrec/secret-kv".into(),
            source: std::io::Error::other("disk controller reset"),
        }
    }

    #[async_trait::async_trait]
    impl RecStore for BrokenStore {
        async fn create_generation(
            &self,
            _run_id: &str,
        ) -> Result<Box<dyn newsrec_kv::GenerationWriter>, KvError> {
            Err(broken())
        }
        async fn generations(&self) -> Result<Vec<newsrec_kv::GenerationInfo>, KvError> {
            Err(broken())
        }
        async fn current(&self) -> Result<Option<newsrec_kv::GenerationInfo>, KvError> {
            Err(broken())
        }
        async fn activate(&self, _generation: Generation) -> Result<(), KvError> {
            Err(broken())
        }
        async fn prune(&self, _keep: usize) -> Result<Vec<Generation>, KvError> {
            Err(broken())
        }
        async fn refresh(&self) -> Result<bool, KvError> {
            Err(broken())
        }
        async fn user_list(
            &self,
            _user_id: &str,
        ) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            Err(broken())
        }
        async fn fallback_list(&self) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            Err(broken())
        }
        async fn similar_list(
            &self,
            _article_id: &str,
        ) -> Result<Option<newsrec_kv::StoredList>, KvError> {
            Err(broken())
        }
    }

    #[tokio::test]
    async fn a_failing_store_is_unavailable_without_detail() {
        let app = open_app(Arc::new(BrokenStore));
        for uri in [
            "/v1/users/u1/recommendations",
            "/v1/articles/a1/similar",
            "/healthz",
        ] {
            let response = app
                .clone()
                .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert_eq!(response.headers()[header::RETRY_AFTER], "1", "{uri}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"], "store unavailable", "{uri}");
            assert!(
                !String::from_utf8_lossy(&bytes).contains("secret-kv"),
                "{uri}: {body}"
            );
        }
        let (_, body) = get(&app, "/healthz").await;
        assert_eq!(
            body["status"], "store unavailable",
            "the probe's field stays"
        );
    }

    #[tokio::test]
    async fn api_keys_read_history_and_load_shedding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SlowStore(EmbeddedStore::open(dir.path()).unwrap()));
        conformance::publish(store.as_ref(), "run-1", &[("u1", &["a1", "a2", "a3"])]).await;
        let signals = Signals::new(SignalLimits::default());
        let guard = Guard {
            keys: auth::ApiKeys::new(vec!["secret".into()]),
            admin_keys: auth::ApiKeys::new(vec!["admin".into()]),
            shedder: shed::Shedder::new(1, Duration::from_millis(20)),
        };
        let state = ServeState {
            store,
            default_k: 3,
            max_k: 10,
            metrics: None,
            signals: Some(signals.clone()),
            blend: Blend::daily_only(),
            articles: None,
        };
        let app = router(state, guard);
        let request = |key: Option<&str>| {
            let mut builder = axum::http::Request::get("/v1/users/u1/recommendations");
            if let Some(key) = key {
                builder = builder.header("authorization", format!("Bearer {key}"));
            }
            builder.body(Body::empty()).unwrap()
        };
        let status = |response: Response| response.status();
        assert_eq!(
            status(app.clone().oneshot(request(None)).await.unwrap()),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(app.clone().oneshot(request(Some("wrong"))).await.unwrap()),
            StatusCode::UNAUTHORIZED
        );
        let (health, _) = get(&app, "/healthz").await;
        assert_eq!(health, StatusCode::OK, "probes need no key");

        // A read posted after the publish never comes back.
        signals.observe("u1", "a1", 1_000);
        let response = app.clone().oneshot(request(Some("secret"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Recommendations =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        let ids: Vec<&str> = body.items.iter().map(|i| i.article_id.as_str()).collect();
        assert_eq!(ids, ["a2", "a3", "f1"]);

        // One permit, held 300 ms by the first request: the second waits 20 ms, then is shed.
        let first = tokio::spawn(app.clone().oneshot(request(Some("secret"))));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let shed = app.clone().oneshot(request(Some("secret"))).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "shed fast, not after the wait"
        );
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn expired_articles_are_never_served_and_latest_ends_the_chain() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path().join("kv")).unwrap());
        conformance::publish(store.as_ref(), "run-1", &[("u1", &["old", "fresh", "f1"])]).await;
        let signals = Signals::new(SignalLimits::default());
        let registry = Arc::new(articles::ArticleRegistry::open(dir.path(), 48 * HOUR).unwrap());
        let guard = Guard {
            keys: auth::ApiKeys::default(),
            admin_keys: auth::ApiKeys::new(vec!["admin".into()]),
            shedder: shed::Shedder::new(64, Duration::from_millis(50)),
        };
        let state = ServeState {
            store,
            default_k: 3,
            max_k: 10,
            metrics: None,
            signals: Some(signals.clone()),
            blend: Blend::daily_only(),
            articles: Some(registry),
        };
        let app = router(state, guard);
        let put = |key: Option<&str>, body: &str| {
            let mut builder =
                axum::http::Request::put("/v1/articles").header("content-type", "application/json");
            if let Some(key) = key {
                builder = builder.header("authorization", format!("Bearer {key}"));
            }
            app.clone()
                .oneshot(builder.body(Body::from(body.to_owned())).unwrap())
        };
        let articles = r#"[
            {"article_id":"old","published_at":"2026-11-01T00:00:00Z"},
            {"article_id":"fresh","published_at":"2026-11-05T00:00:00Z"},
            {"article_id":"newest","published_at":"2026-11-05T01:00:00Z","category":"politics"},
            {"article_id":"gone","published_at":"2026-11-05T00:00:00Z","expires_at":"2026-11-05T02:00:00Z"},
            {"article_id":"","published_at":1},
            {"article_id":"x","published_at":"soon"}
        ]"#;
        assert_eq!(
            put(None, articles).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "admin route needs the admin key"
        );
        let response = put(Some("admin"), articles).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let reply: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(reply["registered"], 4);
        assert_eq!(
            reply["rejected"][1]["reason"],
            "field \"published_at\": expected RFC 3339 or epoch millis, got \"soon\""
        );

        // The watermark (newest click time) is 2026-11-05T03:00Z: "old" is past 48 h, "gone" expired.
        signals.observe("someone", "fresh", 1_793_847_600_000);
        let (_, body) = get(&app, "/v1/users/u1/recommendations?k=5").await;
        let items: Vec<(&str, &str)> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["article_id"].as_str().unwrap(),
                    i["source"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            items,
            [
                ("fresh", "daily"),
                ("f1", "daily"),
                ("f2", "fallback"),
                ("newest", "latest")
            ]
        );
    }

    #[test]
    fn openapi_documents_every_route() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for route in [
            "/v1/events",
            "/v1/users/{user_id}/recommendations",
            "/v1/articles/{article_id}/similar",
            "/v1/articles",
            "/healthz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(route), "{route} is not documented");
        }
        assert_eq!(paths.len(), 7, "a documented route that no longer exists");
    }
}
