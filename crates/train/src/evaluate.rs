//! Multi-day P1 evaluation (`newsrec eval --from D1 --to D2`): for each day D, every model is
//! trained on `[D - window, D)` and tested on D, exactly as the daily job backtests (the same
//! rollups, models and reader sample); the report has a row per day and the mean.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use newsrec_lake::{Lake, TimeWindow};
use newsrec_model::EvalMetrics;
use serde::Serialize;

use crate::{
    JobControl, Settings, TrainError,
    job::{RunInput, day_window, evaluate_window, fit_window},
};

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

/// Runs P1 for each day of `[from, to]` (both inclusive), from the rollups of the span
/// (brought up to date first), with the models and reader sample the daily job uses.
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
    let input = RunInput::open(lake, span, settings, &JobControl::default()).await?;
    let mut days = Vec::new();
    for day in from.iter_days().take_while(|day| *day <= to) {
        let window = settings.window_for(day);
        let train_clicks = input.span.counts(window).clicks as usize;
        let test_clicks = input.span.counts(day_window(day)).clicks as usize;
        if train_clicks == 0 {
            return Err(TrainError::EmptyWindow {
                start: window.start_date(),
                end: day,
            });
        }
        let started = std::time::Instant::now();
        let fitted = fit_window(lake, &input, window, settings, None).await?;
        let metrics = evaluate_window(&input, &fitted, day).await?;
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
