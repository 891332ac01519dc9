//! Bearer API keys. A route set guarded by an empty key list is open (the single-node default,
//! warned about at start-up); otherwise `Authorization: Bearer <key>` must match one key.
//! Keys are compared in constant time so response timing does not leak key prefixes.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use crate::ServeError;

/// The keys accepted by one set of routes.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Arc<Vec<String>>);

impl ApiKeys {
    pub fn new(keys: Vec<String>) -> ApiKeys {
        ApiKeys(Arc::new(
            keys.into_iter().filter(|key| !key.is_empty()).collect(),
        ))
    }

    /// True when no key is required.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        // Check every key, so timing does not reveal which one (or whether one) matched.
        self.0.iter().fold(false, |matched, key| {
            matched | bool::from(key.as_bytes().ct_eq(presented.as_bytes()))
        })
    }
}

/// Middleware: 401 unless the request carries an accepted bearer key.
pub async fn require_key(State(keys): State<ApiKeys>, request: Request, next: Next) -> Response {
    if keys.is_open() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(key) if keys.accepts(key) => next.run(request).await,
        Some(_) => ServeError::InvalidKey.into_response(),
        None => ServeError::MissingKey.into_response(),
    }
}
