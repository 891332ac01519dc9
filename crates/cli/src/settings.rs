//! Turning the node configuration into the settings each stage takes, and opening the lake and
//! the serving store a configuration names.

use std::{path::Path, sync::Arc};

use anyhow::{Context, bail};
use newsrec_config::Config;
use newsrec_kv::{DynamoStore, EmbeddedStore, RecStore, RedisStore};
use newsrec_lake::Lake;
use newsrec_model::{AlsParams, Blend, CooccurrenceParams, PopularityParams, Similarity};
use newsrec_serve::Blend as ServeBlend;
use newsrec_signals::{CoVisitLimits, HistoryLimits, SignalSettings, TrendingLimits};
use newsrec_train::TrainSettings;

/// The lake of this node: `lake.uri`, or `<data-dir>/lake`.
pub fn open_lake(config: &Config, data_dir: &Path) -> anyhow::Result<Lake> {
    let uri = if config.lake.uri.is_empty() {
        data_dir.join("lake").display().to_string()
    } else {
        config.lake.uri.clone()
    };
    Lake::open(&uri).with_context(|| format!("opening the lake at {uri}"))
}

/// The serving store of this node: `kv.uri` (`redis://host:port/db?prefix=NAME`,
/// `dynamodb://TABLE?endpoint=URL&region=R&create=true`), or the embedded store in
/// `<data-dir>/kv` when empty. A `serving` handle of the embedded store caches the served
/// generation whole (see `EmbeddedStore::open_serving`); publish and rollback need no cache.
pub async fn open_store(
    config: &Config,
    data_dir: &Path,
    serving: bool,
) -> anyhow::Result<Arc<dyn RecStore>> {
    let uri = config.kv.uri.as_str();
    if uri.starts_with("redis://") {
        let store = RedisStore::connect(uri)
            .await
            .context("connecting to the Redis serving store")?;
        return Ok(Arc::new(store));
    }
    if uri.starts_with("dynamodb://") {
        let store = DynamoStore::connect(uri)
            .await
            .context("connecting to the DynamoDB serving store")?;
        return Ok(Arc::new(store));
    }
    if !uri.is_empty() {
        bail!(
            "unsupported kv.uri {uri:?}: use redis://…, dynamodb://… or leave it empty for the embedded store"
        );
    }
    let dir = data_dir.join("kv");
    let store = if serving {
        EmbeddedStore::open_serving(&dir)
    } else {
        EmbeddedStore::open(&dir)
    }
    .with_context(|| format!("opening the serving store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Training settings from the `[train]` section.
pub fn train_settings(config: &Config) -> TrainSettings {
    let train = &config.train;
    let co = &train.cooccurrence;
    TrainSettings {
        window_days: train.window_days,
        top_k: train.top_k,
        fallback_k: train.fallback_k,
        similar_k: train.similar_k,
        select_metric: train.select_metric.clone(),
        popularity: PopularityParams {
            half_life_hours: train.popularity.half_life_hours,
        },
        cooccurrence: CooccurrenceParams {
            // The config crate validated the spelling.
            similarity: if co.similarity == "lift" {
                Similarity::Lift
            } else {
                Similarity::Jaccard
            },
            affinity_half_life_hours: co.affinity_half_life_hours,
            min_cooccurrence: co.min_cooccurrence,
            neighbours: co.neighbours,
            popularity_weight: co.popularity_weight,
            blend: if co.blend == "geometric" {
                Blend::Geometric
            } else {
                Blend::Linear
            },
            popular_candidates: co.popular_candidates,
        },
        als: train.als.enabled.then_some(AlsParams {
            factors: train.als.factors,
            regularization: train.als.regularization as f32,
            alpha: train.als.alpha as f32,
            iterations: train.als.iterations,
            cg_steps: train.als.cg_steps,
            seed: train.als.seed,
            popularity_weight: train.als.popularity_weight,
        }),
        list_part_users: train.list_part_users,
    }
}

/// The real-time signals' bounds from `[signals]` and the read history keys of `[serve]`.
pub fn signal_settings(config: &Config) -> SignalSettings {
    let signals = &config.signals;
    let minutes = |m: u32| i64::from(m) * 60_000;
    SignalSettings {
        trending: TrendingLimits {
            half_life_ms: minutes(signals.trending_half_life_min),
            max_articles: signals.trending_max_articles,
            snapshot_len: signals.trending_snapshot,
            refresh_ms: signals.refresh_ms as i64,
        },
        covisit: CoVisitLimits {
            half_life_ms: minutes(signals.covisit_half_life_min),
            window_ms: minutes(signals.covisit_window_min),
            lookback: signals.covisit_lookback,
            backward_weight: signals.covisit_backward_weight,
            max_neighbours: signals.covisit_max_neighbours,
            max_articles: signals.covisit_max_articles,
        },
        reads: HistoryLimits {
            max_users: config.serve.history_max_users,
            max_reads_per_user: config.serve.history_reads_per_user,
            ttl_ms: i64::from(config.serve.history_ttl_hours) * 3_600_000,
        },
        max_lateness_ms: signals.max_lateness_s as i64 * 1000,
    }
}

/// The serving blend from `[serve.blend]`.
pub fn blend(config: &Config) -> ServeBlend {
    let blend = &config.serve.blend;
    ServeBlend {
        daily_weight: blend.daily_weight,
        trending_weight: blend.trending_weight,
        covisit_weight: blend.covisit_weight,
        covisit_prior: blend.covisit_prior,
        trending_candidates: blend.trending_candidates,
        covisit_seeds: blend.covisit_seeds,
        covisit_candidates: blend.covisit_candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_gives_default_train_settings() {
        assert_eq!(train_settings(&Config::default()), TrainSettings::default());
    }
}
