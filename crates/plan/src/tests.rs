//! Tests for the planner: the worked examples of docs/plan.md, the edge cases, the price table and the
//! properties the rules promise.

use proptest::prelude::*;

use super::*;

/// The reference workload as a planner input: 8,000 events/s of 750 B, everything else default.
fn example_input() -> WorkloadInput {
    WorkloadInput {
        events_per_sec: Some(8_000.0),
        event_bytes: Some(750),
        ..WorkloadInput::default()
    }
}

fn plan_for(input: WorkloadInput) -> Result<Plan, PlanError> {
    plan(&input.resolve()?, &PriceTable::defaults())
}

fn close(left: f64, right: f64) -> bool {
    (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
}

// --- shard sizing --------------------------------------------------------------------------------

#[test]
fn worked_example_six_megabytes_per_second_needs_six_shards() {
    let plan = plan_for(example_input()).unwrap();
    let sizing = &plan.ingestion.sizing;
    assert!(close(sizing.peak_bytes_per_second, 6_000_000.0));
    assert_eq!(sizing.shards_for_write_bytes, 6);
    assert_eq!(sizing.shards, 6);
    assert_eq!(sizing.binding_limit, BindingLimit::WriteBytes);
    // The default aggregation packs 68 events of 750 B into a 51,000 B record.
    assert_eq!(sizing.events_per_record, 51_200 / 750);
    assert_eq!(sizing.record_bytes, 68 * 750);
}

#[test]
fn without_aggregation_the_records_rule_binds_at_eight_shards() {
    let plan = plan_for(WorkloadInput {
        events_per_record: Some(1),
        ..example_input()
    })
    .unwrap();
    let sizing = &plan.ingestion.sizing;
    assert_eq!(sizing.shards_for_write_bytes, 6);
    assert_eq!(sizing.shards_for_write_records, 8);
    assert_eq!(sizing.shards, 8);
    assert_eq!(sizing.binding_limit, BindingLimit::WriteRecords);
}

#[test]
fn shards_are_sized_at_peak() {
    let plan = plan_for(WorkloadInput {
        peak_factor: Some(10.0),
        ..example_input()
    })
    .unwrap();
    assert_eq!(plan.ingestion.sizing.shards, 60);
    // The bill is for the average, not the peak: the same GB as without a peak factor.
    let flat = plan_for(example_input()).unwrap();
    assert!(close(
        plan.managed.lines[0].quantity,
        flat.managed.lines[0].quantity
    ));
}

#[test]
fn read_side_adds_shards_when_many_consumers_share_them() {
    let plan = plan_for(WorkloadInput {
        consumers: Some(5),
        ..example_input()
    })
    .unwrap();
    let sizing = &plan.ingestion.sizing;
    // 5 consumers × 6 MB/s = 30 MB/s of reads at 2 MB/s per shard.
    assert_eq!(sizing.shards_for_read_bytes, 15);
    assert_eq!(sizing.shards, 15);
    assert_eq!(sizing.binding_limit, BindingLimit::ReadBytes);
    assert!(render_table(&plan).contains("enhanced fan-out"));
}

#[test]
fn zero_events_needs_one_shard_and_bills_no_traffic() {
    let plan = plan_for(WorkloadInput {
        events_per_sec: Some(0.0),
        ..example_input()
    })
    .unwrap();
    assert_eq!(plan.ingestion.sizing.shards, 1);
    assert_eq!(
        plan.ingestion.sizing.binding_limit,
        BindingLimit::MinimumOneShard
    );
    assert_eq!(plan.managed.lines[0].monthly_usd, 0.0);
    assert_eq!(plan.newsrec_nodes.ingest_nodes, 1);
    assert!(render_table(&plan).contains("no traffic: the minimum of one shard"));
}

#[test]
fn an_event_over_the_record_limit_is_refused_with_the_reason() {
    let error = plan_for(WorkloadInput {
        event_bytes: Some(2_000_000),
        ..example_input()
    })
    .unwrap_err();
    assert!(matches!(
        error,
        PlanError::EventOverRecordLimit {
            event_bytes: 2_000_000,
            record_limit_bytes: RECORD_LIMIT_BYTES
        }
    ));
    let message = error.to_string();
    assert!(message.contains("2000000 bytes is over the 1000000-byte (1 MB) record limit"));
    assert!(message.contains("send a reference"));
}

#[test]
fn an_event_exactly_at_the_record_limit_fits() {
    let plan = plan_for(WorkloadInput {
        event_bytes: Some(RECORD_LIMIT_BYTES),
        events_per_sec: Some(3.0),
        ..example_input()
    })
    .unwrap();
    assert_eq!(plan.ingestion.sizing.events_per_record, 1);
    assert_eq!(plan.ingestion.sizing.shards, 3);
}

#[test]
fn over_aggregation_is_refused_with_the_largest_count_that_fits() {
    let error = plan_for(WorkloadInput {
        events_per_record: Some(2_000),
        ..example_input()
    })
    .unwrap_err();
    assert!(matches!(
        error,
        PlanError::AggregatedRecordOverLimit {
            largest_events_per_record: 1_333,
            ..
        }
    ));
    assert!(
        error
            .to_string()
            .contains("--events-per-record to at most 1333")
    );
}

// --- ingestion choice ----------------------------------------------------------------------------

#[test]
fn one_consumer_without_kafka_gets_a_delivery_stream() {
    let plan = plan_for(example_input()).unwrap();
    assert_eq!(plan.ingestion.choice, IngestionChoice::DeliveryStream);
    assert_eq!(plan.ingestion.rule, IngestionRule::SingleConsumer);
    assert!(plan.ingestion.kafka.is_none());
    assert!(
        plan.managed
            .lines
            .iter()
            .all(|line| line.price != PriceName::StreamShardHour)
    );
}

#[test]
fn several_consumers_get_a_multi_consumer_stream_billed_by_shard() {
    let plan = plan_for(WorkloadInput {
        consumers: Some(3),
        ..example_input()
    })
    .unwrap();
    assert_eq!(plan.ingestion.choice, IngestionChoice::MultiConsumerStream);
    assert_eq!(plan.ingestion.rule, IngestionRule::SeveralConsumers);
    let shard_line = plan
        .managed
        .lines
        .iter()
        .find(|line| line.price == PriceName::StreamShardHour)
        .unwrap();
    assert!(close(
        shard_line.quantity,
        plan.ingestion.sizing.shards as f64 * 730.0
    ));
}

#[test]
fn kafka_api_only_when_the_kafka_ecosystem_is_required() {
    let several = plan_for(WorkloadInput {
        consumers: Some(3),
        kafka_ecosystem: Some(true),
        ..example_input()
    })
    .unwrap();
    assert_eq!(several.ingestion.choice, IngestionChoice::KafkaApiStream);
    assert_eq!(
        several.ingestion.rule,
        IngestionRule::SeveralConsumersKafkaRequired
    );
    let kafka = several.ingestion.kafka.as_ref().unwrap();
    assert_eq!(kafka.partitions, several.ingestion.sizing.shards);
    assert_eq!(kafka.brokers % KAFKA_MIN_BROKERS, 0);
    assert!(kafka.brokers >= KAFKA_MIN_BROKERS);

    let single = plan_for(WorkloadInput {
        kafka_ecosystem: Some(true),
        ..example_input()
    })
    .unwrap();
    assert_eq!(single.ingestion.choice, IngestionChoice::KafkaApiStream);
    assert_eq!(
        single.ingestion.rule,
        IngestionRule::KafkaRequiredSingleConsumer
    );
}

#[test]
fn kafka_brokers_grow_with_traffic_in_multiples_of_three() {
    let sizing = size_shards(200_000.0, 1_000, 50, 2).unwrap();
    let kafka = size_kafka(&sizing, 2);
    // 200 MB/s × (3 replicas + 2 consumers) = 1,000 MB/s ÷ 40 MB/s = 25 → 27.
    let expected_by_traffic =
        (kafka.peak_broker_traffic_bytes_per_second / KAFKA_BROKER_BYTES_PER_SECOND).ceil() as u64;
    assert_eq!(expected_by_traffic, 25);
    assert_eq!(kafka.brokers, 27);
}

// --- training capacity ---------------------------------------------------------------------------

#[test]
fn worked_example_45_minute_job_with_120_minute_deadline_is_on_demand_when_critical() {
    let decision = decide_capacity(0.75, 2.0, true);
    assert!((decision.buffer_ratio - 2.67).abs() < 0.005);
    assert_eq!(decision.choice, CapacityChoice::OnDemand);
    assert_eq!(decision.rule, TrainingRule::TightBufferCritical);
    assert!(decision.reason.contains("2.67×"));
}

#[test]
fn the_same_tight_job_falls_back_instead_when_not_critical() {
    let decision = decide_capacity(0.75, 2.0, false);
    assert_eq!(decision.choice, CapacityChoice::SpotWithOnDemandFallback);
    assert_eq!(decision.rule, TrainingRule::TightBufferNotCritical);
}

#[test]
fn worked_example_six_hour_job_in_a_three_day_window_is_spot() {
    let decision = decide_capacity(6.0, 72.0, true);
    assert!(close(decision.buffer_ratio, 12.0));
    assert_eq!(decision.choice, CapacityChoice::Spot);
    assert_eq!(decision.rule, TrainingRule::AmpleBuffer);
}

#[test]
fn worked_example_45_minute_job_with_12_hour_deadline_is_spot() {
    let decision = decide_capacity(0.75, 12.0, true);
    assert!(close(decision.buffer_ratio, 16.0));
    assert_eq!(decision.choice, CapacityChoice::Spot);
}

#[test]
fn a_buffer_from_three_to_four_times_is_spot_with_fallback() {
    for deadline in [3.0, 3.5, 4.0] {
        let decision = decide_capacity(1.0, deadline, true);
        assert_eq!(decision.choice, CapacityChoice::SpotWithOnDemandFallback);
        assert_eq!(decision.rule, TrainingRule::ModerateBuffer);
    }
    assert_eq!(
        decide_capacity(1.0, 4.01, true).choice,
        CapacityChoice::Spot
    );
}

#[test]
fn jobs_under_thirty_minutes_run_on_demand_whatever_the_buffer() {
    let decision = decide_capacity(20.0 / 60.0, 48.0, false);
    assert_eq!(decision.choice, CapacityChoice::OnDemand);
    assert_eq!(decision.rule, TrainingRule::ShortJob);
    // Thirty minutes exactly is not "under thirty minutes".
    assert_eq!(
        decide_capacity(0.5, 48.0, false).choice,
        CapacityChoice::Spot
    );
}

#[test]
fn a_deadline_shorter_than_training_refuses_spot_and_says_so() {
    let plan = plan_for(WorkloadInput {
        train_hours: Some(6.0),
        deadline_hours: Some(4.0),
        ..example_input()
    })
    .unwrap();
    assert_eq!(plan.training.choice, CapacityChoice::OnDemand);
    assert_eq!(
        plan.training.rule,
        TrainingRule::DeadlineShorterThanTraining
    );
    assert!(plan.training.reason.contains("spot is refused"));
    let warning = plan.training.deadline_unmeetable.as_ref().unwrap();
    assert!(warning.contains("4.00 h deadline is shorter than one 6.00 h training run"));
    assert!(plan.warnings.contains(warning));
}

#[test]
fn spot_training_is_billed_with_the_interruption_overhead() {
    let plan = plan_for(WorkloadInput {
        train_hours: Some(6.0),
        deadline_hours: Some(72.0),
        ..example_input()
    })
    .unwrap();
    let prices = PriceTable::defaults();
    let overhead = prices.value(PriceName::SpotInterruptionOverhead);
    let runs = 730.0 / 24.0;
    let line = plan
        .newsrec
        .lines
        .iter()
        .find(|line| line.price == PriceName::NewsrecTrainingSpotHour)
        .unwrap();
    assert!(close(line.quantity, runs * 6.0 * (1.0 + overhead)));
    assert!(close(
        plan.training_costs.newsrec_spot_usd,
        line.monthly_usd
    ));
    assert!(
        plan.prices_used
            .iter()
            .any(|used| used.name == PriceName::SpotInterruptionOverhead)
    );
}

// --- costs ---------------------------------------------------------------------------------------

#[test]
fn totals_are_the_sum_of_their_lines_and_the_saving_their_difference() {
    let plan = plan_for(WorkloadInput {
        serving_rps: Some(500.0),
        users: Some(2_000_000),
        consumers: Some(2),
        ..example_input()
    })
    .unwrap();
    for bill in [&plan.managed, &plan.newsrec] {
        let sum: f64 = bill.lines.iter().map(|line| line.monthly_usd).sum();
        assert!(close(sum, bill.monthly_total_usd));
        for line in &bill.lines {
            assert!(close(line.monthly_usd, line.quantity * line.unit_price));
        }
    }
    assert!(close(
        plan.monthly_saving_with_newsrec_usd,
        plan.managed.monthly_total_usd - plan.newsrec.monthly_total_usd
    ));
}

#[test]
fn delivery_stream_bills_records_in_five_kilobyte_increments() {
    // One 750 B event per record is billed as 5,000 B.
    let plan = plan_for(WorkloadInput {
        events_per_record: Some(1),
        ..example_input()
    })
    .unwrap();
    let line = &plan.managed.lines[0];
    assert_eq!(line.price, PriceName::DeliveryStreamPerGb);
    let monthly_records = 8_000.0 * 730.0 * 3600.0;
    assert!(close(line.quantity, monthly_records * 5_000.0 / 1e9));
}

#[test]
fn key_value_reads_and_writes_follow_requests_and_users() {
    let plan = plan_for(WorkloadInput {
        serving_rps: Some(100.0),
        users: Some(1_000_000),
        retrain: Some("every 12h".to_owned()),
        ..example_input()
    })
    .unwrap();
    let quantity = |price| {
        plan.managed
            .lines
            .iter()
            .find(|line| line.price == price)
            .unwrap()
            .quantity
    };
    assert!(close(
        quantity(PriceName::KvReadPerMillion),
        100.0 * 730.0 * 3600.0 / 1e6
    ));
    assert!(close(
        quantity(PriceName::KvWritePerMillion),
        1_000_000.0 * (730.0 / 12.0) / 1e6
    ));
}

#[test]
fn newsrec_nodes_are_sized_from_the_measured_throughput() {
    let plan = plan_for(WorkloadInput {
        peak_factor: Some(3.0),
        serving_rps: Some(2_000.0),
        ingest_events_per_sec_per_node: Some(10_000.0),
        serve_rps_per_node: Some(1_500.0),
        ..example_input()
    })
    .unwrap();
    // 24,000 events/s at peak ÷ 10,000 = 3 nodes; 6,000 requests/s ÷ 1,500 = 4 nodes.
    assert_eq!(plan.newsrec_nodes.ingest_nodes, 3);
    assert_eq!(plan.newsrec_nodes.serve_nodes, 4);
    assert!(
        !plan
            .warnings
            .iter()
            .any(|warning| warning.contains("placeholder"))
    );
}

// --- prices --------------------------------------------------------------------------------------

#[test]
fn the_shipped_price_file_sets_every_price_with_a_source() {
    let prices = PriceTable::defaults();
    for name in PriceName::ALL {
        let price = prices.get(name);
        assert!(price.value >= 0.0, "{}", name.key());
        assert!(!price.source.is_empty(), "{}", name.key());
        assert!(
            DEFAULT_PRICES_TOML.contains(&format!("\n{} = ", name.key())),
            "{} is missing from config/prices.toml",
            name.key()
        );
    }
    assert_eq!(prices.iter().count(), PriceName::ALL.len());
}

#[test]
fn a_price_file_overrides_a_subset_and_names_its_source() {
    let prices = PriceTable::defaults()
        .with_overrides(
            "object_storage_per_gb_month = 0.02\n\
             stream_shard_hour = { value = 0.012, source = \"our contract\" }\n",
            "mine.toml",
        )
        .unwrap();
    let storage = prices.get(PriceName::ObjectStoragePerGbMonth);
    assert_eq!(storage.value, 0.02);
    assert_eq!(storage.source, "override from mine.toml");
    assert_eq!(
        prices.get(PriceName::StreamShardHour).source,
        "our contract"
    );
    assert_eq!(
        prices.get(PriceName::KvReadPerMillion),
        PriceTable::defaults().get(PriceName::KvReadPerMillion)
    );
}

#[test]
fn an_unknown_price_is_refused_naming_it_and_the_known_ones() {
    let error = PriceTable::defaults()
        .with_overrides("shard_hour = 0.01\n", "mine.toml")
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("unknown price `shard_hour` in the price file mine.toml"));
    assert!(message.contains("stream_shard_hour"));
}

#[test]
fn malformed_prices_are_refused() {
    let refuse = |text: &str| {
        PriceTable::defaults()
            .with_overrides(text, "mine.toml")
            .unwrap_err()
            .to_string()
    };
    assert!(refuse("stream_shard_hour = -1\n").contains("use 0 or more"));
    assert!(refuse("stream_shard_hour = \"cheap\"\n").contains("bare number"));
    assert!(refuse("stream_shard_hour = { usd = 1 }\n").contains("unknown field `usd`"));
    assert!(refuse("stream_shard_hour = { source = \"x\" }\n").contains("no number at `value`"));
    assert!(refuse("stream_shard_hour = \n").starts_with("cannot read the price file mine.toml"));
}

#[test]
fn the_output_names_the_source_of_every_price_it_used() {
    let plan = plan_for(example_input()).unwrap();
    let table = render_table(&plan);
    for line in plan.managed.lines.iter().chain(&plan.newsrec.lines) {
        let used = plan
            .prices_used
            .iter()
            .find(|used| used.name == line.price)
            .unwrap();
        assert!(table.contains(&format!("{} = ", line.price.key())));
        assert!(!used.source.is_empty());
    }
}

// --- workload input ------------------------------------------------------------------------------

#[test]
fn a_workload_file_is_read_and_flags_override_it() {
    let file = WorkloadInput::from_toml(
        "events_per_sec = 1000\nevent_bytes = 500\nconsumers = 3\nretrain = \"weekly\"\n",
        "workload.toml",
    )
    .unwrap();
    let merged = file.overridden_by(WorkloadInput {
        events_per_sec: Some(8_000.0),
        ..WorkloadInput::default()
    });
    let workload = merged.resolve().unwrap();
    assert_eq!(workload.events_per_second, 8_000.0);
    assert_eq!(workload.event_bytes, 500);
    assert_eq!(workload.consumers, 3);
    assert_eq!(workload.retrain_interval_hours, 168.0);
    // The deadline defaults to the retrain interval.
    assert_eq!(workload.deadline_hours, 168.0);
}

#[test]
fn an_unknown_workload_key_is_refused_naming_it() {
    let message = WorkloadInput::from_toml("events_per_second = 10\n", "workload.toml")
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("cannot read the workload file workload.toml: unknown field"));
    assert!(message.contains("events_per_second"), "{message}");
}

#[test]
fn missing_required_inputs_say_which_flag_to_pass() {
    let message = WorkloadInput::default().resolve().unwrap_err().to_string();
    assert_eq!(
        message,
        "the workload has no events per second: pass --events-per-sec or set `events_per_sec` in \
         the workload file"
    );
}

#[test]
fn out_of_range_inputs_are_refused() {
    for input in [
        WorkloadInput {
            event_bytes: Some(0),
            ..example_input()
        },
        WorkloadInput {
            peak_factor: Some(0.5),
            ..example_input()
        },
        WorkloadInput {
            consumers: Some(0),
            ..example_input()
        },
        WorkloadInput {
            events_per_sec: Some(-1.0),
            ..example_input()
        },
        WorkloadInput {
            train_hours: Some(0.0),
            ..example_input()
        },
    ] {
        assert!(matches!(input.resolve(), Err(PlanError::OutOfRange { .. })));
    }
}

#[test]
fn retrain_intervals_are_read_in_several_spellings() {
    for (text, hours) in [
        ("every 24h", 24.0),
        ("24h", 24.0),
        ("Every 12 hours", 12.0),
        ("90m", 1.5),
        ("every 2 days", 48.0),
        ("weekly", 168.0),
        ("daily", 24.0),
        ("every-6h", 6.0),
    ] {
        assert_eq!(parse_retrain_interval(text).unwrap(), hours, "{text}");
    }
    for text in ["", "soon", "24", "0h", "-3h", "every"] {
        let message = parse_retrain_interval(text).unwrap_err().to_string();
        assert!(
            message.contains("write it as `every 24h`"),
            "{text}: {message}"
        );
    }
}

#[test]
fn the_manifest_sets_training_time_unless_one_was_given() {
    let manifest = r#"{"run_id":"x","timings":{"total_ms":21600000}}"#;
    let mut input = example_input();
    input
        .apply_manifest(manifest, "runs/last/manifest.json")
        .unwrap();
    let workload = input.resolve().unwrap();
    assert!(close(workload.training_hours, 6.0));
    assert!(
        workload
            .training_hours_source
            .contains("runs/last/manifest.json")
    );

    let mut given = WorkloadInput {
        train_hours: Some(2.0),
        ..example_input()
    };
    given.apply_manifest(manifest, "m.json").unwrap();
    assert_eq!(given.resolve().unwrap().training_hours, 2.0);
}

#[test]
fn a_manifest_without_a_training_time_says_so() {
    let message = training_hours_from_manifest(r#"{"timings":{}}"#, "m.json")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "the run manifest m.json has no positive number at `timings.total_ms` (the training time \
         in milliseconds): pass --train-hours instead"
    );
    assert!(matches!(
        training_hours_from_manifest("not json", "m.json"),
        Err(PlanError::InvalidManifest { .. })
    ));
}

#[test]
fn defaults_are_marked_and_warned_about() {
    let plan = plan_for(example_input()).unwrap();
    for key in [
        "peak_factor",
        "train_hours",
        "consumers",
        "serve_rps_per_node",
    ] {
        assert!(
            plan.workload.defaulted.iter().any(|name| name == key),
            "{key}"
        );
    }
    assert!(
        plan.warnings
            .iter()
            .any(|warning| warning.contains("--train-hours or --manifest"))
    );
}

// --- output --------------------------------------------------------------------------------------

#[test]
fn the_json_names_rules_and_choices() {
    let plan = plan_for(example_input()).unwrap();
    let json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["ingestion"]["choice"], "delivery_stream");
    assert_eq!(json["ingestion"]["rule"], "single_consumer");
    assert_eq!(json["ingestion"]["sizing"]["shards"], 6);
    // The default 1 h run against the default 24 h deadline (the retrain interval) is 24×.
    assert_eq!(json["training"]["choice"], "spot");
    assert_eq!(json["prices_used"][0]["name"], "delivery_stream_per_gb");
    assert!(serde_json::to_string(&plan).unwrap().lines().count() == 1);
}

#[test]
fn the_table_shows_the_rule_that_fired_for_each_choice() {
    let plan = plan_for(WorkloadInput {
        train_hours: Some(6.0),
        deadline_hours: Some(72.0),
        ..example_input()
    })
    .unwrap();
    let table = render_table(&plan);
    assert!(table.contains("Ingestion: managed delivery stream"));
    assert!(table.contains("rule fired: single_consumer"));
    assert!(table.contains("shards:        6 (the write-bytes rule binds)"));
    assert!(table.contains("Training: spot"));
    assert!(table.contains("rule fired: ample_buffer"));
    assert!(table.contains("Prices used"));
    assert!(
        table.lines().all(|line| line.chars().count() <= 100),
        "{table}"
    );
}

#[test]
fn error_messages_are_lowercase_without_a_trailing_period() {
    let errors = [
        plan_for(WorkloadInput {
            event_bytes: Some(5_000_000),
            ..example_input()
        })
        .unwrap_err(),
        WorkloadInput::default().resolve().unwrap_err(),
        parse_retrain_interval("soon").unwrap_err(),
        training_hours_from_manifest("{}", "m.json").unwrap_err(),
        PriceTable::defaults()
            .with_overrides("nope = 1", "p.toml")
            .unwrap_err(),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(
            message.starts_with(|first: char| first.is_lowercase()),
            "{message}"
        );
        assert!(!message.ends_with('.'), "{message}");
    }
}

// --- properties ----------------------------------------------------------------------------------

proptest! {
    #[test]
    fn more_events_never_means_fewer_shards(
        events_per_second in 0.0f64..5_000_000.0,
        extra_events_per_second in 0.0f64..5_000_000.0,
        event_bytes in 1u64..=RECORD_LIMIT_BYTES,
        requested_events_per_record in 1u64..=1_000,
        consumers in 1u32..=20,
        peak_factor in 1.0f64..20.0,
        kafka_ecosystem_required in any::<bool>(),
    ) {
        let events_per_record =
            requested_events_per_record.min(RECORD_LIMIT_BYTES / event_bytes).max(1);
        let shards = |rate: f64| {
            decide_ingestion(
                rate,
                peak_factor,
                event_bytes,
                events_per_record,
                consumers,
                kafka_ecosystem_required,
            )
            .unwrap()
            .sizing
            .shards
        };
        let fewer = shards(events_per_second);
        let more = shards(events_per_second + extra_events_per_second);
        prop_assert!(more >= fewer, "{} events/s: {fewer} shards, more events: {more}", events_per_second);
    }

    #[test]
    fn a_longer_deadline_never_flips_spot_to_on_demand(
        training_hours in 0.01f64..200.0,
        deadline_hours in 0.01f64..2_000.0,
        extra_deadline_hours in 0.0f64..2_000.0,
        critical in any::<bool>(),
    ) {
        let shorter = decide_capacity(training_hours, deadline_hours, critical);
        let longer = decide_capacity(training_hours, deadline_hours + extra_deadline_hours, critical);
        prop_assert!(
            longer.choice >= shorter.choice,
            "{:?} at {} h became {:?} at {} h",
            shorter.choice,
            deadline_hours,
            longer.choice,
            deadline_hours + extra_deadline_hours
        );
        if shorter.choice.bills_spot() {
            prop_assert_ne!(longer.choice, CapacityChoice::OnDemand);
        }
    }

    #[test]
    fn every_valid_workload_plans_with_finite_costs(
        events_per_second in 0.0f64..1_000_000.0,
        event_bytes in 1u64..=100_000,
        consumers in 1u32..=10,
        training_hours in 0.01f64..100.0,
        deadline_hours in 0.01f64..500.0,
        serving_rps in 0.0f64..100_000.0,
        users in 0u64..100_000_000,
    ) {
        let plan = plan_for(WorkloadInput {
            events_per_sec: Some(events_per_second),
            event_bytes: Some(event_bytes),
            consumers: Some(consumers),
            train_hours: Some(training_hours),
            deadline_hours: Some(deadline_hours),
            serving_rps: Some(serving_rps),
            users: Some(users),
            ..WorkloadInput::default()
        })
        .unwrap();
        prop_assert!(plan.managed.monthly_total_usd.is_finite());
        prop_assert!(plan.newsrec.monthly_total_usd.is_finite());
        prop_assert!(plan.ingestion.sizing.shards >= 1);
    }
}
