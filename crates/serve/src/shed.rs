//! Load shedding: a concurrency limit with a queue-time budget.
//!
//! A request waits for one of `max_in_flight` permits for at most `queue_budget`; if none frees
//! up in time it gets a fast 503 with `Retry-After` instead of joining a queue whose wait would
//! push every request's latency up. Clients (and load balancers) retry elsewhere or later.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use crate::ServeError;

/// The shedding policy of one set of routes.
#[derive(Debug, Clone)]
pub struct Shedder {
    permits: Arc<Semaphore>,
    queue_budget: Duration,
}

impl Shedder {
    pub fn new(max_in_flight: usize, queue_budget: Duration) -> Shedder {
        Shedder {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            queue_budget,
        }
    }
}

/// Middleware: run the request under a permit, or shed it.
pub async fn shed_load(State(shedder): State<Shedder>, request: Request, next: Next) -> Response {
    let permit = match shedder.permits.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => tokio::time::timeout(
            shedder.queue_budget,
            shedder.permits.clone().acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok),
    };
    let Some(_permit) = permit else {
        metrics::counter!("newsrec_serve_shed_total").increment(1);
        return ServeError::Overloaded.into_response();
    };
    next.run(request).await
}
