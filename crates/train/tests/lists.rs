//! The list-making the job and the replay share: every kind names its own model, a kind that
//! was not fitted is an error (never another model), and no empty list is handed out.

use chrono::NaiveDate;
use newsrec_lake::{Lake, TimeWindow};
use newsrec_testkit::{SynthConfig, fill_lake};
use newsrec_train::{AlsSettings, ClickLog, FittedModels, ModelKind, Settings, TrainError, lists};

async fn log_and_day() -> (ClickLog, NaiveDate) {
    let lake = Lake::open("memory://").unwrap();
    let synth = SynthConfig {
        users: 400,
        days: 3,
        sessions_per_day: 800,
        ..SynthConfig::default()
    };
    fill_lake(&lake, &synth).await.unwrap();
    let day = synth.start + chrono::Days::new(2);
    let log = ClickLog::read(&lake, TimeWindow::days(synth.start, day))
        .await
        .unwrap();
    (log, day)
}

fn settings(als: bool) -> Settings {
    Settings {
        als: AlsSettings {
            enabled: als,
            factors: 4,
            iterations: 2,
            ..AlsSettings::default()
        },
        ..Settings::default()
    }
}

#[tokio::test]
async fn each_kind_is_its_own_model_and_lists_are_never_empty() {
    let (log, day) = log_and_day().await;
    let settings = settings(true);
    let models = FittedModels::fit(&log, settings.window_for(day), &settings).unwrap();
    assert_eq!(models.kinds(), ModelKind::ALL.to_vec());
    let users: Vec<u32> = (0..log.users.len() as u32).collect();
    for kind in ModelKind::ALL {
        assert_eq!(models.model(kind).unwrap().name(), kind.name());
        let lists = lists::user_lists((&log).into(), &models, kind, 5, &users).unwrap();
        assert!(!lists.is_empty(), "{kind}");
        assert!(
            lists
                .iter()
                .all(|list| !list.items.is_empty() && list.items.len() <= 5)
        );
        // In the order of the users asked for.
        let positions: Vec<usize> = lists
            .iter()
            .map(|list| log.users.iter().position(|u| *u == list.user_id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{kind}");
    }
    let fallback = lists::fallback_list((&log).into(), &models, 7);
    assert_eq!(fallback.len(), 7);
    assert!(fallback.windows(2).all(|w| w[0].score >= w[1].score));
    let similar = lists::similar_lists((&log).into(), &models, 3);
    assert!(
        similar
            .iter()
            .all(|list| !list.items.is_empty() && list.items.len() <= 3)
    );
    assert!(
        similar.iter().all(|list| list
            .items
            .iter()
            .all(|item| item.article_id != list.article_id)),
        "an article is not similar to itself"
    );
}

#[tokio::test]
async fn a_kind_that_was_not_fitted_is_an_error_not_another_model() {
    let (log, day) = log_and_day().await;
    let settings = settings(false);
    let models = FittedModels::fit(&log, settings.window_for(day), &settings).unwrap();
    assert_eq!(
        models.kinds(),
        vec![ModelKind::Popularity, ModelKind::Cooccurrence]
    );
    let error = lists::user_lists((&log).into(), &models, ModelKind::Als, 5, &[0]).unwrap_err();
    assert!(
        matches!(error, TrainError::ModelNotFitted(ModelKind::Als)),
        "{error}"
    );
}
