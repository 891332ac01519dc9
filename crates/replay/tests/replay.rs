//! Protocol P2 end to end on a synthetic lake: the replay runs through the serving code, is
//! deterministic for a seed, samples as told, and the variants measure different things.

use newsrec_lake::Lake;
use newsrec_replay::{ModelKind, ReplayRequest, replay_range};
use newsrec_serve::Blend;
use newsrec_signals::SignalLimits;
use newsrec_testkit::{SynthConfig, fill_lake};
use newsrec_train::Settings;

fn request(synth: &SynthConfig, store_dir: std::path::PathBuf, sample: usize) -> ReplayRequest {
    let first = synth.start + chrono::Days::new(2);
    ReplayRequest {
        from: first,
        to: first + chrono::Days::new(1),
        sample,
        seed: 7,
        daily_model: ModelKind::Cooccurrence,
        train: Settings {
            window_days: 2,
            ..Settings::default()
        },
        signals: SignalLimits::default(),
        blend: Blend::default(),
        article_max_age_ms: 48 * 3_600_000,
        warmup_hours: 24,
        store_dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_deterministic_and_reports_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&format!("file://{}", dir.path().join("lake").display())).unwrap();
    let synth = SynthConfig {
        users: 400,
        days: 4,
        sessions_per_day: 1_500,
        ..SynthConfig::default()
    };
    fill_lake(&lake, &synth).await.unwrap();

    let progress = |_: newsrec_replay::ReplayProgress<'_>| {};
    let first = replay_range(
        &lake,
        &request(&synth, dir.path().join("kv1"), 300),
        &progress,
    )
    .await
    .unwrap();
    let again = replay_range(
        &lake,
        &request(&synth, dir.path().join("kv2"), 300),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(first.days.len(), 2);
    for (a, b) in first.days.iter().zip(&again.days) {
        assert_eq!(a.variants, b.variants, "same lake, same seed, same figures");
        assert!(a.sampled <= 300 && a.sampled > 0, "{a:?}");
        assert!(a.eligible >= a.sampled);
        assert!(a.users_published > 0);
        let names: Vec<&str> = a.variants.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["trending", "daily", "newsrec"]);
        for (_, m) in &a.variants {
            assert!(
                (0.0..=1.0).contains(&m.hit_rate) && m.mrr <= m.hit_rate,
                "{m:?}"
            );
        }
        assert!(a.signals.memory_bytes > 0 && a.signals.clicks > 0);
    }
    let hr = |name: &str| {
        first
            .mean
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .hit_rate
    };
    assert!(hr("trending") > 0.0, "{:?}", first.mean);
    assert_ne!(
        hr("trending"),
        hr("daily"),
        "variants differ: {:?}",
        first.mean
    );

    // A smaller sample is a subset draw, and an inverted range is refused.
    let small = replay_range(
        &lake,
        &request(&synth, dir.path().join("kv3"), 10),
        &progress,
    )
    .await
    .unwrap();
    assert!(small.days.iter().all(|day| day.sampled == 10));
    let mut inverted = request(&synth, dir.path().join("kv4"), 10);
    std::mem::swap(&mut inverted.from, &mut inverted.to);
    let error = replay_range(&lake, &inverted, &progress).await.unwrap_err();
    assert!(error.to_string().contains("is after"), "{error}");
}
