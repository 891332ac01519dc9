//! The human-readable form of a [`Plan`]: a plain-text report with the working behind each
//! choice, both bills line by line, and the source of every price. (The JSON form is the `Plan`
//! serialized as it is.)

use std::fmt::Write;

use crate::cost::{CostEstimate, plain};
use crate::ingestion::{BindingLimit, IngestionChoice};
use crate::{Plan, Workload};

/// Width the report's prose is wrapped to.
const WRAP_WIDTH: usize = 100;

/// Renders the plan as a plain-text report, ending in a newline.
pub fn render_table(plan: &Plan) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the results are ignored throughout.
    let _ = writeln!(out, "newsrec plan: capacity and monthly cost");
    let _ = writeln!(out, "=======================================");
    render_workload(&mut out, &plan.workload);
    render_ingestion(&mut out, plan);
    render_training(&mut out, plan);
    render_bill(&mut out, &plan.managed);
    render_bill(&mut out, &plan.newsrec);
    render_comparison(&mut out, plan);
    render_prices(&mut out, plan);
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings");
        for warning in &plan.warnings {
            wrap_into(&mut out, warning, "  - ", "    ");
        }
    }
    out
}

fn render_workload(out: &mut String, workload: &Workload) {
    let origin = |key: &str, given: &str| -> String {
        if workload.defaulted.iter().any(|name| name == key) {
            "default".to_owned()
        } else {
            given.to_owned()
        }
    };
    let yes_no = |flag: bool| if flag { "yes" } else { "no" };
    let rows: Vec<(&str, String, String)> = vec![
        (
            "events/s (average)",
            plain(workload.events_per_second),
            "given".to_owned(),
        ),
        (
            "event size",
            format!("{} B", group_thousands(workload.event_bytes)),
            "given".to_owned(),
        ),
        (
            "peak factor",
            format!("{}", workload.peak_factor),
            origin("peak_factor", "given"),
        ),
        (
            "events per record",
            group_thousands(workload.events_per_record),
            workload.events_per_record_source.clone(),
        ),
        (
            "consumers",
            workload.consumers.to_string(),
            origin("consumers", "given"),
        ),
        (
            "Kafka ecosystem required",
            yes_no(workload.kafka_ecosystem_required).to_owned(),
            origin("kafka_ecosystem", "given"),
        ),
        (
            "training time",
            format!("{:.2} h", workload.training_hours),
            workload.training_hours_source.clone(),
        ),
        (
            "deadline",
            format!("{:.2} h", workload.deadline_hours),
            workload.deadline_hours_source.clone(),
        ),
        (
            "critical",
            yes_no(workload.critical).to_owned(),
            origin("critical", "given"),
        ),
        (
            "retrain every",
            format!("{:.2} h", workload.retrain_interval_hours),
            origin("retrain", "given"),
        ),
        (
            "serving requests/s",
            plain(workload.serving_requests_per_second),
            origin("serving_rps", "given"),
        ),
        (
            "users",
            group_thousands(workload.users),
            origin("users", "given"),
        ),
        (
            "ingest events/s per node",
            plain(workload.ingest_events_per_second_per_node),
            origin("ingest_events_per_sec_per_node", "given"),
        ),
        (
            "serve requests/s per node",
            plain(workload.serve_requests_per_second_per_node),
            origin("serve_rps_per_node", "given"),
        ),
        (
            "lake retention",
            format!("{} days", plain(workload.lake_retention_days)),
            origin("lake_retention_days", "given"),
        ),
    ];
    let _ = writeln!(out, "\nWorkload");
    for (label, value, source) in rows {
        let _ = writeln!(out, "  {label:<27}{value:>12}   {source}");
    }
}

fn render_ingestion(out: &mut String, plan: &Plan) {
    let ingestion = &plan.ingestion;
    let sizing = &ingestion.sizing;
    let megabytes = sizing.peak_bytes_per_second / 1e6;
    let _ = writeln!(out, "\nIngestion: {}", ingestion.choice.describe());
    let rule = ingestion.rule.key();
    wrap_into(
        out,
        &format!("rule fired: {rule}: {}", ingestion.reason),
        "  ",
        "    ",
    );
    let _ = writeln!(
        out,
        "  peak write:    {} events/s = {megabytes:.2} MB/s = {} records/s ({} events per {} B \
         record)",
        plain(sizing.peak_events_per_second),
        plain(sizing.peak_records_per_second),
        group_thousands(sizing.events_per_record),
        group_thousands(sizing.record_bytes),
    );
    let _ = writeln!(
        out,
        "  write bytes:   ceil({megabytes:.2} MB/s ÷ 1 MB/s per shard) = {}",
        sizing.shards_for_write_bytes
    );
    let _ = writeln!(
        out,
        "  write records: ceil({} records/s ÷ 1,000 records/s per shard) = {}",
        plain(sizing.peak_records_per_second),
        sizing.shards_for_write_records
    );
    let _ = writeln!(
        out,
        "  read side:     ceil({} consumer(s) × {megabytes:.2} MB/s ÷ 2 MB/s per shard) = {}",
        plan.workload.consumers, sizing.shards_for_read_bytes
    );
    let binding = match sizing.binding_limit {
        BindingLimit::WriteBytes => "the write-bytes rule binds",
        BindingLimit::WriteRecords => "the write-records rule binds",
        BindingLimit::ReadBytes => "the read side binds",
        BindingLimit::MinimumOneShard => "no traffic: the minimum of one shard",
    };
    let _ = writeln!(out, "  shards:        {} ({binding})", sizing.shards);
    if sizing.binding_limit == BindingLimit::ReadBytes {
        wrap_into(
            out,
            &format!(
                "(consumers share a shard's 2 MB/s of reads; with enhanced fan-out each consumer \
                 reads 2 MB/s per shard of its own and {} shards would do, at a per-consumer \
                 charge this plan does not price)",
                sizing
                    .shards_for_write_bytes
                    .max(sizing.shards_for_write_records)
                    .max(1)
            ),
            "  ",
            "   ",
        );
    }
    if let Some(kafka) = &ingestion.kafka {
        let _ = writeln!(
            out,
            "  Kafka:         {} partitions; {} brokers = max(3, ceil({:.2} MB/s broker traffic ÷ \
             40 MB/s)) rounded up to a multiple of 3",
            kafka.partitions,
            kafka.brokers,
            kafka.peak_broker_traffic_bytes_per_second / 1e6
        );
    }
    if ingestion.choice == IngestionChoice::DeliveryStream {
        let _ = writeln!(
            out,
            "  (a delivery stream is not billed by shard; the count sizes the stream alternative)"
        );
    }
}

fn render_training(out: &mut String, plan: &Plan) {
    let training = &plan.training;
    let costs = &plan.training_costs;
    let _ = writeln!(out, "\nTraining: {}", training.choice.describe());
    let rule = training.rule.key();
    wrap_into(
        out,
        &format!("rule fired: {rule}: {}", training.reason),
        "  ",
        "    ",
    );
    let _ = writeln!(
        out,
        "  runs/month:    {:.2} (730 h ÷ {:.2} h retrain interval)",
        costs.runs_per_month, plan.workload.retrain_interval_hours
    );
    let _ = writeln!(
        out,
        "  per month:     managed {} on-demand, {} spot; newsrec {} on-demand, {} spot",
        usd(costs.managed_on_demand_usd),
        usd(costs.managed_spot_usd),
        usd(costs.newsrec_on_demand_usd),
        usd(costs.newsrec_spot_usd),
    );
}

fn render_bill(out: &mut String, bill: &CostEstimate) {
    let _ = writeln!(out, "\nMonthly cost: {}", bill.design);
    let _ = writeln!(
        out,
        "  {:<34}{:>26}{:>14}{:>14}",
        "item", "quantity", "unit price", "per month"
    );
    for line in &bill.lines {
        let quantity = format!("{} {}", amount(line.quantity), line.quantity_unit);
        let _ = writeln!(
            out,
            "  {:<34}{:>26}{:>14}{:>14}",
            line.item,
            quantity,
            unit_price(line.unit_price),
            usd(line.monthly_usd)
        );
        wrap_into(out, &format!("= {}", line.formula), "      ", "        ");
    }
    let _ = writeln!(
        out,
        "  {:<34}{:>26}{:>14}{:>14}",
        "total",
        "",
        "",
        usd(bill.monthly_total_usd)
    );
}

fn render_comparison(out: &mut String, plan: &Plan) {
    let saving = plan.monthly_saving_with_newsrec_usd;
    let managed = plan.managed.monthly_total_usd;
    let _ = writeln!(out);
    if saving >= 0.0 {
        let share = if managed > 0.0 {
            format!(" ({:.0}% of the managed bill)", 100.0 * saving / managed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "newsrec costs {} a month less than the managed design{share}",
            usd(saving)
        );
    } else {
        let _ = writeln!(
            out,
            "newsrec costs {} a month more than the managed design",
            usd(-saving)
        );
    }
}

fn render_prices(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "\nPrices used");
    for price in &plan.prices_used {
        let key = price.name.key();
        let _ = writeln!(out, "  {key} = {} {}", price.value, price.unit);
        wrap_into(
            out,
            &format!("source: {}", price.source),
            "      ",
            "        ",
        );
    }
}

/// Writes `text` wrapped at [`WRAP_WIDTH`], the first line after `first_prefix`, the rest after
/// `rest_prefix`.
fn wrap_into(out: &mut String, text: &str, first_prefix: &str, rest_prefix: &str) {
    let mut line = first_prefix.to_owned();
    let mut line_has_words = false;
    for word in text.split_whitespace() {
        if line_has_words && line.chars().count() + 1 + word.chars().count() > WRAP_WIDTH {
            let _ = writeln!(out, "{line}");
            line = rest_prefix.to_owned();
            line_has_words = false;
        }
        if line_has_words {
            line.push(' ');
        }
        line.push_str(word);
        line_has_words = true;
    }
    let _ = writeln!(out, "{line}");
}

/// `1234567` as `1,234,567`.
pub(crate) fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Dollars with cents and thousands separators.
fn usd(value: f64) -> String {
    let cents = (value * 100.0).round().max(0.0) as u64;
    format!("${}.{:02}", group_thousands(cents / 100), cents % 100)
}

/// A unit price, with as many decimals as small prices need.
fn unit_price(value: f64) -> String {
    if value >= 1.0 {
        format!("${value:.2}")
    } else {
        format!("${value:.4}")
    }
}

/// A quantity: thousands-grouped when large, two decimals when small.
fn amount(value: f64) -> String {
    if value >= 1000.0 {
        group_thousands(value.round() as u64)
    } else {
        format!("{value:.2}")
    }
}
