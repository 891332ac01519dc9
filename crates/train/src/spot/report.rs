//! What a spot run did and what it cost, priced from the planner's table.

use newsrec_plan::{PriceName, PriceTable};
use serde::Serialize;

use super::SpotError;

/// How a spot run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotOutcome {
    Completed,
    MaxRunReached,
    MaxWaitReached,
    /// The job failed for a reason other than an interruption (its exit code is reported).
    Failed,
}

/// What an hour of the training machine costs, USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpotPrices {
    pub on_demand_per_hour: f64,
    pub spot_per_hour: f64,
}

impl SpotPrices {
    /// newsrec's training instance in `prices`: the machine `newsrec plan` bills newsrec's
    /// training on.
    pub fn from_table(prices: &PriceTable) -> SpotPrices {
        SpotPrices {
            on_demand_per_hour: prices.value(PriceName::NewsrecTrainingOnDemandHour),
            spot_per_hour: prices.value(PriceName::NewsrecTrainingSpotHour),
        }
    }
}

impl Default for SpotPrices {
    /// The shipped price table's.
    fn default() -> Self {
        SpotPrices::from_table(&PriceTable::defaults())
    }
}

/// What a spot run did and what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct SpotReport {
    pub run_id: String,
    pub outcome: SpotOutcome,
    pub exit_code: Option<i32>,
    pub wall_s: f64,
    /// Seconds children ran (all starts, including work an interruption threw away).
    pub training_s: f64,
    /// Seconds spent waiting for capacity.
    pub waiting_s: f64,
    /// Training time at the spot price, in on-demand seconds.
    pub billable_s: f64,
    pub starts: u32,
    pub interruptions: u32,
    pub savings_pct: f64,
    pub on_demand_price_per_hour: f64,
    pub spot_price_per_hour: f64,
    pub spot_cost_usd: f64,
    /// The same machine time on demand.
    pub on_demand_cost_usd: f64,
}

impl SpotReport {
    /// A run that has not started yet.
    pub(super) fn new(run_id: &str, prices: SpotPrices) -> SpotReport {
        SpotReport {
            run_id: run_id.to_owned(),
            outcome: SpotOutcome::Completed,
            exit_code: None,
            wall_s: 0.0,
            training_s: 0.0,
            waiting_s: 0.0,
            billable_s: 0.0,
            starts: 0,
            interruptions: 0,
            savings_pct: 0.0,
            on_demand_price_per_hour: prices.on_demand_per_hour,
            spot_price_per_hour: prices.spot_per_hour,
            spot_cost_usd: 0.0,
            on_demand_cost_usd: 0.0,
        }
    }

    /// Fills in the billable time, savings and costs from the training time and the prices.
    pub(super) fn priced(mut self) -> SpotReport {
        let ratio = self.spot_price_per_hour / self.on_demand_price_per_hour;
        self.billable_s = self.training_s * ratio;
        self.savings_pct = if self.training_s > 0.0 {
            (1.0 - self.billable_s / self.training_s) * 100.0
        } else {
            0.0
        };
        self.spot_cost_usd = self.training_s / 3600.0 * self.spot_price_per_hour;
        self.on_demand_cost_usd = self.training_s / 3600.0 * self.on_demand_price_per_hour;
        self
    }

    /// The report as the rows of a two-column table (what, figure), for people.
    pub fn table_rows(&self) -> Vec<Vec<String>> {
        let row = |what: &str, figure: String| vec![what.to_owned(), figure];
        vec![
            row("run", self.run_id.clone()),
            row("outcome", format!("{:?}", self.outcome)),
            row("wall time", format!("{:.1} s", self.wall_s)),
            row("training time", format!("{:.1} s", self.training_s)),
            row("waiting for capacity", format!("{:.1} s", self.waiting_s)),
            row("billable time", format!("{:.1} s", self.billable_s)),
            row("starts", self.starts.to_string()),
            row("interruptions", self.interruptions.to_string()),
            row(
                "cost",
                format!(
                    "${:.6} spot vs ${:.6} on demand (${}/h vs ${}/h)",
                    self.spot_cost_usd,
                    self.on_demand_cost_usd,
                    self.spot_price_per_hour,
                    self.on_demand_price_per_hour
                ),
            ),
            row(
                "savings",
                format!(
                    "{:.1} % = (1 - billable / training) x 100",
                    self.savings_pct
                ),
            ),
        ]
    }

    /// Ok for a completed run; otherwise the budget that ran out or the job's failure.
    pub fn completed(&self) -> Result<(), SpotError> {
        let what = match self.outcome {
            SpotOutcome::Completed => return Ok(()),
            SpotOutcome::Failed => {
                return Err(SpotError::JobFailed {
                    exit_code: self.exit_code,
                });
            }
            SpotOutcome::MaxRunReached => "--max-run",
            SpotOutcome::MaxWaitReached => "--max-wait",
        };
        Err(SpotError::BudgetSpent {
            what,
            run_id: self.run_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savings_follow_the_price_ratio() {
        let prices = SpotPrices {
            on_demand_per_hour: 0.4,
            spot_per_hour: 0.1,
        };
        let mut report = SpotReport::new("r", prices);
        report.training_s = 100.0;
        let report = report.priced();
        assert!((report.billable_s - 25.0).abs() < 1e-9);
        assert!((report.savings_pct - 75.0).abs() < 1e-9);
        assert!((report.spot_cost_usd - 100.0 / 3600.0 * 0.1).abs() < 1e-12);
        assert!((report.on_demand_cost_usd - 100.0 / 3600.0 * 0.4).abs() < 1e-12);
    }

    #[test]
    fn prices_are_the_planners_training_instance() {
        let table = PriceTable::defaults();
        let prices = SpotPrices::default();
        assert_eq!(
            prices.on_demand_per_hour,
            table.value(PriceName::NewsrecTrainingOnDemandHour)
        );
        assert_eq!(
            prices.spot_per_hour,
            table.value(PriceName::NewsrecTrainingSpotHour)
        );
        // The report divides by the on-demand price, and a spot run is meant to save.
        assert!(0.0 < prices.spot_per_hour && prices.spot_per_hour < prices.on_demand_per_hour);
        let cheaper = table
            .with_overrides("newsrec_training_spot_hour = 0.1", "test.toml")
            .unwrap();
        assert_eq!(SpotPrices::from_table(&cheaper).spot_per_hour, 0.1);
    }

    #[test]
    fn the_table_shows_the_prices_used() {
        let prices = SpotPrices {
            on_demand_per_hour: 0.4,
            spot_per_hour: 0.1,
        };
        let mut report = SpotReport::new("r2", prices);
        report.training_s = 3600.0;
        let rows = report.priced().table_rows();
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[0], ["run", "r2"]);
        assert_eq!(
            rows[8][1],
            "$0.100000 spot vs $0.400000 on demand ($0.1/h vs $0.4/h)"
        );
        assert_eq!(rows[9][1], "75.0 % = (1 - billable / training) x 100");
    }

    #[test]
    fn only_a_completed_run_is_ok() {
        let mut report = SpotReport::new("r1", SpotPrices::default());
        assert!(report.completed().is_ok());
        report.outcome = SpotOutcome::MaxWaitReached;
        let error = report.completed().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--max-wait reached before run r1 finished"),
            "{error}"
        );
        report.outcome = SpotOutcome::MaxRunReached;
        assert!(matches!(
            report.completed(),
            Err(SpotError::BudgetSpent {
                what: "--max-run",
                ..
            })
        ));
        report.outcome = SpotOutcome::Failed;
        report.exit_code = Some(3);
        assert!(matches!(
            report.completed(),
            Err(SpotError::JobFailed { exit_code: Some(3) })
        ));
    }
}
