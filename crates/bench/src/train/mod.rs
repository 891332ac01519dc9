//! `newsrec bench train`: implicit-feedback ALS fit time and quality against the `implicit`
//! library (CPU), same machine, same run, same hyperparameters and thread count.
//!
//! Two matrices: (a) the Globo window `[2017-10-02, 2017-10-09)` imported from the shared CSV
//! files, with P1 NDCG@10 on 2017-10-09 for both fits; (b) a synthetic 100k users × 20k items ×
//! 5M clicks matrix with power-law popularity (fixed seed), fit time only. The peer gets the
//! same confidences: newsrec weighs an observed pair `1 + alpha · affinity`, and `implicit`
//! multiplies its input by `alpha`, so it is handed `(1 + alpha · affinity) / alpha`. The peer
//! runs as a Python child process (`implicit_peer.py`, embedded in the binary) that times
//! `fit` alone and writes its factors back, which newsrec ranks with the same code as its own.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use newsrec_lake::{Lake, TimeWindow};
use newsrec_model::{
    AlsFactors, AlsModel, AlsParams, AlsTraining, Dataset, Interaction, PopularityModel,
    PopularityParams, Recommender, TestSet, evaluate_p1,
};
use newsrec_train::{ClickLog, Settings, test_set, training_data};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

use crate::{BenchError, Format, Host, Report, median};

/// The peer script, written to a temporary folder at run time.
const PEER_SCRIPT: &str = include_str!("implicit_peer.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetChoice {
    Globo,
    Synthetic,
    Both,
}

#[derive(Debug, clap::Args)]
pub struct TrainBenchArgs {
    /// Which matrices to fit
    #[arg(long, value_enum, default_value_t = DatasetChoice::Both)]
    pub dataset: DatasetChoice,
    /// Folder of the Globo `clicks-YYYY-MM-DD.csv.gz` files
    #[arg(long, default_value = "../shared/data/globo-clicks")]
    pub globo_dir: PathBuf,
    /// Fits per side; medians are reported
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Threads for both sides (default: every core)
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    #[arg(long, default_value_t = 0.01)]
    pub regularization: f32,
    #[arg(long, default_value_t = 40.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    #[arg(long, default_value_t = 3)]
    pub cg_steps: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Python with `implicit` installed (`pip install implicit`)
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Measure newsrec alone
    #[arg(long)]
    pub no_peer: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One matrix's figures.
#[derive(Debug, Serialize)]
struct DatasetReport {
    users: usize,
    items: usize,
    pairs: usize,
    fit_s: f64,
    peer_fit_s: Option<f64>,
    ratio: Option<f64>,
    ndcg10: Option<f64>,
    peer_ndcg10: Option<f64>,
    hr10: Option<f64>,
    peer_hr10: Option<f64>,
    evaluated_users: Option<usize>,
}

#[derive(Debug, Serialize)]
struct TrainBenchReport {
    stage: &'static str,
    threads: usize,
    runs: usize,
    params: AlsParams,
    peer: Option<String>,
    globo: Option<DatasetReport>,
    synthetic: Option<DatasetReport>,
}

/// A matrix to fit, with the P1 test set when there is one.
struct Matrix {
    dataset: Dataset,
    popularity: PopularityModel,
    test: Option<TestSet>,
}

pub(crate) async fn run<H: Host>(host: &H, args: TrainBenchArgs) -> Result<Report, BenchError> {
    if args.runs == 0 {
        return Err(BenchError::InvalidArgs("--runs must be at least 1".into()));
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let params = AlsParams {
        factors: args.factors,
        regularization: args.regularization,
        alpha: args.alpha,
        iterations: args.iterations,
        cg_steps: args.cg_steps,
        seed: args.seed,
        // The peer ranks by pure ALS scores; so does newsrec here.
        popularity_weight: 0.0,
    };
    let peer = if args.no_peer {
        None
    } else {
        Some(implicit_version(&args.python)?)
    };
    let work = tempfile::tempdir().map_err(BenchError::io("creating a temporary folder"))?;
    let mut report = TrainBenchReport {
        stage: "train",
        threads,
        runs: args.runs,
        params: params.clone(),
        peer: peer.clone(),
        globo: None,
        synthetic: None,
    };
    if matches!(args.dataset, DatasetChoice::Globo | DatasetChoice::Both) {
        eprintln!("loading the Globo window 2017-10-02..2017-10-09 (test day 2017-10-09)…");
        let matrix = globo_matrix(host, &args.globo_dir, work.path()).await?;
        report.globo = Some(measure(
            "globo",
            &matrix,
            &params,
            threads,
            &args,
            &work.path().join("globo"),
        )?);
    }
    if matches!(args.dataset, DatasetChoice::Synthetic | DatasetChoice::Both) {
        eprintln!("generating the synthetic matrix (100k users × 20k items × 5M clicks)…");
        let matrix = synthetic_matrix(100_000, 20_000, 5_000_000, 7);
        report.synthetic = Some(measure(
            "synthetic",
            &matrix,
            &params,
            threads,
            &args,
            &work.path().join("synthetic"),
        )?);
    }
    Report::of(args.format, &report, table)
}

fn measure(
    name: &str,
    matrix: &Matrix,
    params: &AlsParams,
    threads: usize,
    args: &TrainBenchArgs,
    folder: &Path,
) -> Result<DatasetReport, BenchError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|error| BenchError::Unexpected(format!("building the thread pool: {error}")))?;
    let mut fit_times = Vec::new();
    let mut model = None;
    for run in 1..=args.runs {
        let started = Instant::now();
        let fitted = pool.install(|| {
            AlsModel::fit(&matrix.dataset, matrix.popularity.clone(), params.clone())
        })?;
        fit_times.push(started.elapsed().as_secs_f64());
        eprintln!(
            "  {name} run {run}/{}: newsrec fit {:.2} s",
            args.runs,
            fit_times[fit_times.len() - 1]
        );
        model = Some(fitted);
    }
    let model = model.expect("at least one run");
    let mut peer_times = Vec::new();
    let mut peer_model = None;
    if !args.no_peer {
        write_matrix(folder, &matrix.dataset, params, threads)?;
        for run in 1..=args.runs {
            let fit_s = run_peer(&args.python, folder)?;
            eprintln!(
                "  {name} run {run}/{}: implicit fit {fit_s:.2} s",
                args.runs
            );
            peer_times.push(fit_s);
        }
        let factors = read_peer_factors(folder, &matrix.dataset, params.factors)?;
        let training =
            AlsTraining::resume(&matrix.dataset, params.clone(), factors, params.iterations)?;
        peer_model = Some(training.finish(matrix.popularity.clone()));
    }
    let fit_s = median(&mut fit_times, f64::NAN);
    let peer_fit_s = (!peer_times.is_empty()).then(|| median(&mut peer_times, f64::NAN));
    let (mut ndcg10, mut peer_ndcg10, mut hr10, mut peer_hr10, mut evaluated) =
        (None, None, None, None, None);
    if let Some(test) = &matrix.test {
        eprintln!("  {name}: P1 on the test day…");
        let ours = pool.install(|| evaluate_p1(&model as &dyn Recommender, &matrix.dataset, test));
        ndcg10 = Some(ours.ndcg);
        hr10 = Some(ours.hit_rate);
        evaluated = Some(ours.users);
        if let Some(peer) = &peer_model {
            let theirs =
                pool.install(|| evaluate_p1(peer as &dyn Recommender, &matrix.dataset, test));
            peer_ndcg10 = Some(theirs.ndcg);
            peer_hr10 = Some(theirs.hit_rate);
        }
    }
    Ok(DatasetReport {
        users: matrix.dataset.n_users(),
        items: matrix.dataset.n_items(),
        pairs: matrix.dataset.n_pairs(),
        fit_s,
        peer_fit_s,
        ratio: peer_fit_s.map(|peer| fit_s / peer),
        ndcg10,
        peer_ndcg10,
        hr10,
        peer_hr10,
        evaluated_users: evaluated,
    })
}

/// Imports the Globo days into a scratch lake and builds the window's matrix and test set.
async fn globo_matrix<H: Host>(host: &H, dir: &Path, work: &Path) -> Result<Matrix, BenchError> {
    let first = chrono::NaiveDate::from_ymd_opt(2017, 10, 2).expect("a valid date");
    let test_day = chrono::NaiveDate::from_ymd_opt(2017, 10, 9).expect("a valid date");
    let files: Vec<PathBuf> = first
        .iter_days()
        .take_while(|day| *day <= test_day)
        .map(|day| dir.join(format!("clicks-{day}.csv.gz")))
        .collect();
    if let Some(missing) = files.iter().find(|file| !file.is_file()) {
        return Err(BenchError::Missing(format!(
            "{} is missing: pass --globo-dir with the Globo click files, or --dataset synthetic",
            missing.display()
        )));
    }
    let lake_dir = work.join("lake");
    let lake =
        Lake::open(lake_dir.to_str().ok_or_else(|| {
            BenchError::Unexpected(format!("{} is not UTF-8", lake_dir.display()))
        })?)?;
    host.import_globo(&lake, files)
        .await
        .map_err(BenchError::Host)?;
    let settings = Settings::default();
    let window = settings.window_for(test_day);
    let span = TimeWindow::days(window.start_date(), test_day + chrono::Days::new(1));
    let log = ClickLog::read(&lake, span).await?;
    let (dataset, popularity) = training_data(&log, window, &settings)?;
    let test = test_set(&log, &dataset, test_day);
    Ok(Matrix {
        dataset,
        popularity,
        test: Some(test),
    })
}

/// Power-law matrix: item and user activity both drawn from Zipf laws (fixed seed).
fn synthetic_matrix(users: usize, items: usize, clicks: usize, seed: u64) -> Matrix {
    let mut rng = SmallRng::seed_from_u64(seed);
    let item_law = Zipf::new(items as f64, 1.0).expect("valid Zipf parameters");
    let user_law = Zipf::new(users as f64, 0.6).expect("valid Zipf parameters");
    // Ranks are shuffled through a fixed multiplier so popular ids are spread over the range.
    let spread = |rank: f64, n: usize, step: u64| ((rank as u64 - 1) * step % n as u64) as u32;
    let interactions: Vec<Interaction> = (0..clicks)
        .map(|_| Interaction {
            user: spread(user_law.sample(&mut rng), users, 7_919),
            item: spread(item_law.sample(&mut rng), items, 7_753),
            ts_ms: rng.random_range(0..86_400_000),
        })
        .collect();
    let dataset = Dataset::build(users, items, &interactions, 86_400_000, 0.0);
    let popularity = PopularityModel::fit(
        items,
        &interactions,
        86_400_000,
        &PopularityParams::default(),
    )
    .expect("default popularity parameters are valid");
    Matrix {
        dataset,
        popularity,
        test: None,
    }
}

/// Writes the matrix in the peer's input form: COO arrays and the parameters.
fn write_matrix(
    folder: &Path,
    dataset: &Dataset,
    params: &AlsParams,
    threads: usize,
) -> Result<(), BenchError> {
    std::fs::create_dir_all(folder)
        .map_err(BenchError::io(format!("creating {}", folder.display())))?;
    let (mut rows, mut cols, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for user in 0..dataset.n_users() as u32 {
        for (&item, &affinity) in dataset
            .user_items(user)
            .iter()
            .zip(dataset.user_affinities(user))
        {
            rows.extend_from_slice(&(user as i32).to_le_bytes());
            cols.extend_from_slice(&(item as i32).to_le_bytes());
            // implicit multiplies by alpha: this gives it newsrec's 1 + alpha · affinity.
            let value = (1.0 + params.alpha * affinity) / params.alpha.max(f32::MIN_POSITIVE);
            values.extend_from_slice(&value.to_le_bytes());
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        let path = folder.join(name);
        std::fs::write(&path, bytes).map_err(BenchError::io(format!("writing {}", path.display())))
    };
    write("rows.i32", &rows)?;
    write("cols.i32", &cols)?;
    write("values.f32", &values)?;
    write(
        "params.json",
        serde_json::json!({
            "users": dataset.n_users(),
            "items": dataset.n_items(),
            "factors": params.factors,
            "regularization": params.regularization,
            "alpha": params.alpha,
            "iterations": params.iterations,
            "cg_steps": params.cg_steps,
            "seed": params.seed,
            "threads": threads,
        })
        .to_string()
        .as_bytes(),
    )?;
    write("implicit_peer.py", PEER_SCRIPT.as_bytes())
}

/// Runs `python` with `args`; its standard output, or an error led by `failure` with its
/// standard error.
fn run_python(
    python: &str,
    args: &[&std::ffi::OsStr],
    failure: &str,
) -> Result<String, BenchError> {
    let output = Command::new(python)
        .args(args)
        .output()
        .map_err(BenchError::io(format!("running {python}")))?;
    if !output.status.success() {
        return Err(BenchError::Missing(format!(
            "{failure}; {python} said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn implicit_version(python: &str) -> Result<String, BenchError> {
    let version = run_python(
        python,
        &[
            "-c".as_ref(),
            "import implicit; print(implicit.__version__)".as_ref(),
        ],
        "the peer needs the `implicit` library: `pip install implicit` (or pass --no-peer)",
    )?;
    Ok(format!(
        "implicit {} (CPU, conjugate gradient)",
        version.trim()
    ))
}

/// Runs one peer fit; its fit time in seconds.
fn run_peer(python: &str, folder: &Path) -> Result<f64, BenchError> {
    let script = folder.join("implicit_peer.py");
    let stdout = run_python(
        python,
        &[script.as_os_str(), folder.as_os_str()],
        "the implicit peer failed",
    )?;
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| BenchError::Unexpected("the implicit peer printed nothing".into()))?;
    let reply: serde_json::Value = serde_json::from_str(line)
        .map_err(|error| BenchError::Unexpected(format!("peer output {line:?}: {error}")))?;
    reply["fit_s"]
        .as_f64()
        .ok_or_else(|| BenchError::Unexpected(format!("no fit_s in the peer output {line:?}")))
}

fn read_peer_factors(
    folder: &Path,
    dataset: &Dataset,
    factors: usize,
) -> Result<AlsFactors, BenchError> {
    let read = |name: &str, rows: usize| -> Result<Vec<f32>, BenchError> {
        let path = folder.join(name);
        let bytes =
            std::fs::read(&path).map_err(BenchError::io(format!("reading {}", path.display())))?;
        if bytes.len() != rows * factors * 4 {
            return Err(BenchError::Unexpected(format!(
                "{} has {} bytes, expected {rows} × {factors} float32",
                path.display(),
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    Ok(AlsFactors {
        factors,
        user: read("user_factors.f32", dataset.n_users())?,
        item: read("item_factors.f32", dataset.n_items())?,
    })
}

fn table(report: &TrainBenchReport) -> (Vec<Vec<String>>, Vec<String>) {
    let opt = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mut rows = vec![vec![
        "dataset".to_owned(),
        "users".into(),
        "items".into(),
        "pairs".into(),
        "newsrec fit s".into(),
        "implicit fit s".into(),
        "ratio".into(),
        "NDCG@10".into(),
        "implicit NDCG@10".into(),
        "HR@10".into(),
        "implicit HR@10".into(),
    ]];
    for (name, figures) in [("globo", &report.globo), ("synthetic", &report.synthetic)] {
        let Some(d) = figures else { continue };
        rows.push(vec![
            name.to_owned(),
            d.users.to_string(),
            d.items.to_string(),
            d.pairs.to_string(),
            format!("{:.2}", d.fit_s),
            opt(d.peer_fit_s, 2),
            opt(d.ratio, 2),
            opt(d.ndcg10, 4),
            opt(d.peer_ndcg10, 4),
            opt(d.hr10, 4),
            opt(d.peer_hr10, 4),
        ]);
    }
    let notes = vec![
        format!(
            "ALS {} factors, reg {}, alpha {}, {} iterations, {} CG steps, {} threads; median of {} run(s); peer: {}",
            report.params.factors,
            report.params.regularization,
            report.params.alpha,
            report.params.iterations,
            report.params.cg_steps,
            report.threads,
            report.runs,
            report.peer.as_deref().unwrap_or("none")
        ),
        "ratio = newsrec fit time / implicit fit time (lower is better; target ≤ 0.8)".to_owned(),
    ];
    (rows, notes)
}
