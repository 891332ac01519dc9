//! The serving API: recommendations per user from the current generation of the store.
//!
//! Consumes a [`RecStore`] (never the models or the training code: serving only reads what
//! `publish` wrote); produces `GET /v1/users/{user_id}/recommendations?k=&exclude=` answers,
//! `/healthz`, and `/metrics` when given a renderer. Users without a list, or whose list runs
//! short after exclusions, get the generation's fallback (popularity) list, and every item says
//! which it came from. A background refresher picks up generations published by other processes.

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

/// The serving routes.
pub fn router(state: ServeState) -> Router {
    Router::new()
        .route("/v1/users/{user_id}/recommendations", get(recommendations))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
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
    let exclude: HashSet<&str> = query
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
        let app = router(ServeState {
            store: store.clone(),
            default_k: 3,
            max_k: 10,
            metrics: None,
        });
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
}
