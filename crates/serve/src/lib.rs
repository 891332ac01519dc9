//! The serving API: recommendations per user from the current generation of the store.
//!
//! Consumes a [`RecStore`] (never the models or the training code: serving only reads what
//! `publish` wrote); produces `GET /v1/users/{user_id}/recommendations?k=&exclude=` answers,
//! `/healthz`, and `/metrics` when given a renderer. Users without a list, or whose list runs
//! short after exclusions, get the generation's fallback (popularity) list, and every item says
//! which it came from. A background refresher picks up generations published by other processes.

pub mod auth;
pub mod history;
pub mod shed;

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
use newsrec_kv::{Generation, KvError, RecStore};
use serde::{Deserialize, Serialize};

/// Renders the Prometheus exposition text.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Longest accepted user or article id (bytes), as in the event contract.
const MAX_ID_BYTES: usize = 256;
/// Most ids accepted in `exclude`.
const MAX_EXCLUDE: usize = 1_000;

/// What the serving routes need.
#[derive(Clone)]
pub struct ServeState {
    pub store: Arc<dyn RecStore>,
    pub default_k: usize,
    pub max_k: usize,
    pub metrics: Option<MetricsRender>,
    /// This node's view of recent reads (from its own ingest), filtered out of every list.
    pub history: Option<Arc<history::ReadHistory>>,
}

/// What guards the recommendation routes.
#[derive(Debug, Clone)]
pub struct Guard {
    pub keys: auth::ApiKeys,
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
    Personalized,
    Fallback,
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
    /// `personalized` when the user has a list in this generation, else `fallback`.
    pub source: Source,
    pub items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct RecommendationQuery {
    k: Option<usize>,
    /// Comma-separated article ids not to return.
    exclude: Option<String>,
}

/// Why a request failed.
#[derive(Debug)]
enum ServeError {
    BadRequest(String),
    NothingPublished,
    Store(KvError),
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ServeError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ServeError::NothingPublished => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no generation is published yet: run `newsrec train` then `newsrec publish`"
                    .to_owned(),
            ),
            ServeError::Store(error) => {
                tracing::error!(%error, "store read failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("store unavailable: {error}"),
                )
            }
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The serving routes: recommendations behind the API keys and the load shedder; `/healthz`
/// and `/metrics` open, so probes and scrapers work even when the node sheds load.
pub fn router(state: ServeState, guard: Guard) -> Router {
    let guarded = Router::new()
        .route("/v1/users/{user_id}/recommendations", get(recommendations))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.keys,
            auth::require_key,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            guard.shedder,
            shed::shed_load,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .merge(guarded)
        .with_state(state)
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

fn validate_id(what: &str, id: &str) -> Result<(), ServeError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ServeError::BadRequest(format!(
            "{what} must be 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

async fn recommendations(
    State(state): State<ServeState>,
    Path(user_id): Path<String>,
    Query(query): Query<RecommendationQuery>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    validate_id("user id", &user_id)?;
    let k = query.k.unwrap_or(state.default_k);
    if k == 0 || k > state.max_k {
        return Err(ServeError::BadRequest(format!(
            "k must be 1..={}, got {k}",
            state.max_k
        )));
    }
    let mut exclude: HashSet<&str> = query
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
    // Articles read since the last training are not in the list's exclusions yet.
    let recent_reads = state
        .history
        .as_ref()
        .map(|history| history.reads(&user_id))
        .unwrap_or_default();
    exclude.extend(recent_reads.iter().map(String::as_str));
    let personal = state
        .store
        .user_list(&user_id)
        .await
        .map_err(ServeError::Store)?;
    let source = if personal.is_some() {
        Source::Personalized
    } else {
        Source::Fallback
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut items = Vec::with_capacity(k);
    let mut generation = None;
    if let Some(list) = personal {
        generation = Some(list.generation);
        take_into(
            &mut items,
            &mut seen,
            &exclude,
            list.items,
            Source::Personalized,
            k,
        );
    }
    if items.len() < k {
        let fallback = state
            .store
            .fallback_list()
            .await
            .map_err(ServeError::Store)?
            .ok_or(ServeError::NothingPublished)?;
        generation.get_or_insert(fallback.generation);
        take_into(
            &mut items,
            &mut seen,
            &exclude,
            fallback.items,
            Source::Fallback,
            k,
        );
    }
    let generation = generation.ok_or(ServeError::NothingPublished)?;
    metrics::counter!("newsrec_serve_requests_total", "source" => if source == Source::Personalized { "personalized" } else { "fallback" }).increment(1);
    metrics::histogram!("newsrec_serve_seconds").record(started.elapsed().as_secs_f64());
    let mut response = Json(Recommendations {
        user_id,
        generation,
        source,
        items,
    })
    .into_response();
    // Lists change at most once per publish; a short private cache spares repeated page views.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=30"),
    );
    Ok(response)
}

fn take_into(
    items: &mut Vec<Item>,
    seen: &mut HashSet<String>,
    exclude: &HashSet<&str>,
    candidates: Vec<newsrec_kv::RecItem>,
    source: Source,
    k: usize,
) {
    for candidate in candidates {
        if items.len() >= k {
            break;
        }
        if exclude.contains(candidate.article_id.as_str())
            || !seen.insert(candidate.article_id.clone())
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

async fn healthz(State(state): State<ServeState>) -> Response {
    match state.store.current().await {
        Ok(current) => Json(serde_json::json!({
            "status": "ok",
            "generation": current.as_ref().map(|info| info.generation),
            "run_id": current.as_ref().map(|info| info.run_id.clone()),
        }))
        .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "store unavailable", "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn render_metrics(State(state): State<ServeState>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled on this node",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use newsrec_kv::{EmbeddedStore, conformance};
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

    #[tokio::test]
    async fn personalized_fallback_exclusions_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let guard = Guard {
            keys: auth::ApiKeys::default(),
            shedder: shed::Shedder::new(64, Duration::from_millis(50)),
        };
        let state = ServeState {
            store: store.clone(),
            default_k: 3,
            max_k: 10,
            metrics: None,
            history: None,
        };
        let app = router(state, guard);
        let (status, body) = get(&app, "/v1/users/u1/recommendations").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

        conformance::publish(store.as_ref(), "run-1", &[("u1", &["a1", "a2"])]).await;
        let (status, body) = get(&app, "/v1/users/u1/recommendations").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["source"], "personalized");
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

        let (_, body) = get(&app, "/v1/users/stranger/recommendations").await;
        assert_eq!(body["source"], "fallback");

        let (status, body) = get(&app, "/v1/users/u1/recommendations?k=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "k must be 1..=10, got 0");
        let (status, _) = get(&app, "/v1/users/a%0Ab/recommendations").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = get(&app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["run_id"], "run-1");
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
    }

    #[tokio::test]
    async fn api_keys_read_history_and_load_shedding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SlowStore(EmbeddedStore::open(dir.path()).unwrap()));
        conformance::publish(store.as_ref(), "run-1", &[("u1", &["a1", "a2", "a3"])]).await;
        let history = Arc::new(history::ReadHistory::new(history::HistoryLimits {
            max_users: 100,
            max_reads_per_user: 10,
            ttl_ms: 3_600_000,
        }));
        let guard = Guard {
            keys: auth::ApiKeys::new(vec!["secret".into()]),
            shedder: shed::Shedder::new(1, Duration::from_millis(20)),
        };
        let state = ServeState {
            store,
            default_k: 3,
            max_k: 10,
            metrics: None,
            history: Some(history.clone()),
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
        history.record("u1", "a1", 1_000);
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
}
