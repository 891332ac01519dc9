//! The EC2 spot interruption notice, polled through the instance metadata service (IMDSv2).
//!
//! EC2 announces a reclaim two minutes ahead at `/latest/meta-data/spot/instance-action`
//! (404 until then). IMDSv2 needs a session token from `PUT /latest/api/token` first; the token
//! is reused until the service refuses it. The base URL is configurable so tests (and other
//! clouds' metadata emulators) can stand in for `169.254.169.254`.

use std::time::Duration;

use crate::StopSignal;
use reqwest::StatusCode;

const TOKEN_TTL_SECONDS: &str = "21600";

/// Polls the notice every `poll` until one appears, then raises `stop` with its content.
/// Errors reaching the service are logged once and polling goes on: a job must not die
/// because the metadata service hiccuped.
pub async fn watch(base_url: String, poll: Duration, stop: StopSignal) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "cannot build an HTTP client; the spot notice is not watched");
            return;
        }
    };
    let base = base_url.trim_end_matches('/').to_owned();
    let mut token: Option<String> = None;
    let mut warned = false;
    loop {
        match check(&client, &base, &mut token).await {
            Ok(Some(notice)) => {
                tracing::warn!(%notice, "spot interruption notice; checkpointing and stopping");
                stop.raise(format!("spot interruption notice: {notice}"));
                return;
            }
            Ok(None) => {}
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(%error, url = %base, "cannot read the spot notice (will keep trying)");
            }
            Err(_) => {}
        }
        tokio::time::sleep(poll).await;
    }
}

/// One look at the notice: `Some(body)` when EC2 has scheduled an interruption.
async fn check(
    client: &reqwest::Client,
    base: &str,
    token: &mut Option<String>,
) -> Result<Option<String>, reqwest::Error> {
    if token.is_none() {
        let fresh = client
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        *token = Some(fresh);
    }
    let response = client
        .get(format!("{base}/latest/meta-data/spot/instance-action"))
        .header(
            "X-aws-ec2-metadata-token",
            token.as_deref().unwrap_or_default(),
        )
        .send()
        .await?;
    match response.status() {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::UNAUTHORIZED => {
            // The token expired: fetch a new one on the next look.
            *token = None;
            Ok(None)
        }
        _ => Ok(Some(response.error_for_status()?.text().await?)),
    }
}
