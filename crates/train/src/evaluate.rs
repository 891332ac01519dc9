//! Multi-day P1 evaluation (`newsrec eval --from D1 --to D2`): for each day D, every model is
//! trained on `[D - window, D)` and tested on D; the report has a row per day and the mean.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use newsrec_lake::{Lake, TimeWindow};
use newsrec_model::EvalMetrics;
use serde::Serialize;

use crate::{ClickLog, FittedModels, Settings, TrainError};

/// One test day's figures.
#[derive(Debug, Clone, Serialize)]
pub struct DayReport {
    pub date: String,
    pub train_clicks: usize,
    pub test_clicks: usize,
    pub models: BTreeMap<String, EvalMetrics>,
}

/// Means over the days (users: the total of evaluated users over the days).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MeanMetrics {
    #[serde(rename = "hr@10")]
    pub hit_rate: f64,
    #[serde(rename = "recall@10")]
    pub recall: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    pub users: usize,
}

/// The whole evaluation: `{"days": [...], "mean": {"<model>": {...}}}`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub days: Vec<DayReport>,
    pub mean: BTreeMap<String, MeanMetrics>,
}

/// Runs P1 for each day of `[from, to]` (both inclusive).
pub async fn evaluate_range(
    lake: &Lake,
    from: NaiveDate,
    to: NaiveDate,
    settings: &Settings,
) -> Result<EvalReport, TrainError> {
    if to < from {
        return Err(TrainError::Settings(format!(
            "--to {to} is before --from {from}"
        )));
    }
    let span = TimeWindow::days(
        settings.window_for(from).start_date(),
        to + chrono::Days::new(1),
    );
    let log = ClickLog::read(lake, span).await?;
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || evaluate_days(&log, from, to, &settings))
        .await
        .map_err(|join| TrainError::Internal(join.to_string()))?
}

fn evaluate_days(
    log: &ClickLog,
    from: NaiveDate,
    to: NaiveDate,
    settings: &Settings,
) -> Result<EvalReport, TrainError> {
    let mut days = Vec::new();
    for day in from.iter_days().take_while(|day| *day <= to) {
        let window = settings.window_for(day);
        let train_clicks = log.slice(window).len();
        let test_clicks = log
            .slice(TimeWindow::days(day, day + chrono::Days::new(1)))
            .len();
        if train_clicks == 0 {
            return Err(TrainError::EmptyWindow {
                start: window.start_date(),
                end: day,
            });
        }
        let started = std::time::Instant::now();
        let models = FittedModels::fit(log, window, settings)?;
        let metrics = models.evaluate(log, day);
        tracing::info!(%day, train_clicks, test_clicks, ms = started.elapsed().as_millis() as u64, "evaluated day");
        days.push(DayReport {
            date: day.to_string(),
            train_clicks,
            test_clicks,
            models: metrics
                .into_iter()
                .map(|(kind, m)| (kind.name().to_owned(), m))
                .collect(),
        });
    }
    let mut mean = BTreeMap::new();
    if let Some(first) = days.first() {
        for name in first.models.keys() {
            let rows: Vec<&EvalMetrics> = days.iter().filter_map(|d| d.models.get(name)).collect();
            let n = rows.len() as f64;
            mean.insert(
                name.clone(),
                MeanMetrics {
                    hit_rate: rows.iter().map(|m| m.hit_rate).sum::<f64>() / n,
                    recall: rows.iter().map(|m| m.recall).sum::<f64>() / n,
                    ndcg: rows.iter().map(|m| m.ndcg).sum::<f64>() / n,
                    users: rows.iter().map(|m| m.users).sum(),
                },
            );
        }
    }
    Ok(EvalReport { days, mean })
}
