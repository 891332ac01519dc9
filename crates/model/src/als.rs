//! Implicit-feedback matrix factorisation: alternating least squares with Hu–Koren–Volinsky
//! confidence weights, solved per row by a few conjugate-gradient steps (as the `implicit`
//! library's CPU solver does).
//!
//! Every observed (user, item) pair has preference 1 and confidence `1 + alpha · affinity`;
//! every unobserved pair has preference 0 and confidence 1. One iteration solves all user rows
//! with the item factors fixed, then all item rows with the user factors fixed. The work is
//! split by row across rayon threads, and each row's solve is sequential, so the result is the
//! same bits whatever the thread count; the Gram matrix is summed in fixed chunks in a fixed
//! order for the same reason. Training advances one iteration at a time ([`AlsTraining::step`])
//! so a job can checkpoint between iterations and resume with [`AlsTraining::resume`].

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Dataset, ModelError, PopularityModel, Recommender, ScoredItem, top_k};

/// Hyperparameters of [`AlsModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlsParams {
    /// Latent factors per user and item.
    pub factors: usize,
    /// L2 regularisation added to the diagonal of every row's system.
    pub regularization: f32,
    /// Confidence slope: an observed pair weighs `1 + alpha · affinity`.
    pub alpha: f32,
    /// Full iterations (users, then items).
    pub iterations: usize,
    /// Conjugate-gradient steps per row and iteration (warm-started from the previous value).
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
    /// Weight of the decayed-popularity prior in the ranking, 0..=1 (0 = pure ALS scores):
    /// `popularity^w · (personal + 0.01)^(1 − w)`, both normalised to 0..=1.
    pub popularity_weight: f32,
}

impl Default for AlsParams {
    fn default() -> Self {
        AlsParams {
            factors: 64,
            regularization: 0.01,
            alpha: 40.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
            // Pure ALS ranks stale articles high (P1 NDCG@10 0.004 vs 0.079 blended, Globo).
            popularity_weight: 0.5,
        }
    }
}

impl AlsParams {
    /// Why these parameters cannot be used, naming the field; training refuses them too. The
    /// upper bounds keep one run's memory (factors) and time (iterations × steps) in reach.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |name, reason: String| Err(ModelError::InvalidParameter { name, reason });
        if !(1..=1024).contains(&self.factors) {
            return invalid("factors", format!("must be 1..=1024, got {}", self.factors));
        }
        if !(self.regularization >= 0.0 && self.regularization.is_finite()) {
            return invalid(
                "regularization",
                format!("must be a finite number >= 0, got {}", self.regularization),
            );
        }
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return invalid(
                "alpha",
                format!("must be a finite number >= 0, got {}", self.alpha),
            );
        }
        if !(1..=1000).contains(&self.iterations) {
            return invalid(
                "iterations",
                format!("must be 1..=1000, got {}", self.iterations),
            );
        }
        if !(1..=100).contains(&self.cg_steps) {
            return invalid(
                "cg_steps",
                format!("must be 1..=100, got {}", self.cg_steps),
            );
        }
        if !(0.0..=1.0).contains(&self.popularity_weight) {
            return invalid(
                "popularity_weight",
                format!("must be 0..=1, got {}", self.popularity_weight),
            );
        }
        Ok(())
    }
}

/// Rows of one side of the matrix (users, or items) with the other side's ids and confidences.
#[derive(Debug, Clone)]
struct Rows {
    offsets: Vec<usize>,
    columns: Vec<u32>,
    confidence: Vec<f32>,
}

impl Rows {
    fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[row]..self.offsets[row + 1];
        (&self.columns[range.clone()], &self.confidence[range])
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

/// The factor matrices, row-major (`rows × factors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsFactors {
    pub factors: usize,
    pub user: Vec<f32>,
    pub item: Vec<f32>,
}

/// An ALS fit in progress: the factors after `iteration` full iterations.
#[derive(Debug, Clone)]
pub struct AlsTraining {
    params: AlsParams,
    by_user: Rows,
    by_item: Rows,
    factors: AlsFactors,
    iteration: usize,
}

impl AlsTraining {
    /// Starts from seeded random factors (iteration 0).
    pub fn start(dataset: &Dataset, params: AlsParams) -> Result<AlsTraining, ModelError> {
        params.validate()?;
        let f = params.factors;
        let factors = AlsFactors {
            factors: f,
            user: initial_factors(params.seed, 0, dataset.n_users(), f),
            item: initial_factors(params.seed, 1, dataset.n_items(), f),
        };
        Ok(Self::with_factors(dataset, params, factors, 0))
    }

    /// Continues from factors saved after `iteration` iterations (a checkpoint).
    pub fn resume(
        dataset: &Dataset,
        params: AlsParams,
        factors: AlsFactors,
        iteration: usize,
    ) -> Result<AlsTraining, ModelError> {
        params.validate()?;
        let f = params.factors;
        if factors.factors != f
            || factors.user.len() != dataset.n_users() * f
            || factors.item.len() != dataset.n_items() * f
        {
            return Err(ModelError::InvalidParameter {
                name: "factors",
                reason: format!(
                    "saved factors are {} users × {} items × {} factors, the data needs {} × {} × {f}",
                    factors.user.len() / factors.factors.max(1),
                    factors.item.len() / factors.factors.max(1),
                    factors.factors,
                    dataset.n_users(),
                    dataset.n_items()
                ),
            });
        }
        if iteration > params.iterations {
            return Err(ModelError::InvalidParameter {
                name: "iteration",
                reason: format!(
                    "checkpoint is at iteration {iteration}, past the {} asked for",
                    params.iterations
                ),
            });
        }
        Ok(Self::with_factors(dataset, params, factors, iteration))
    }

    fn with_factors(
        dataset: &Dataset,
        params: AlsParams,
        factors: AlsFactors,
        iteration: usize,
    ) -> AlsTraining {
        let by_user = user_rows(dataset, params.alpha);
        let by_item = transpose(&by_user, dataset.n_items());
        AlsTraining {
            params,
            by_user,
            by_item,
            factors,
            iteration,
        }
    }

    /// Iterations done so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// True once every asked-for iteration is done.
    pub fn is_done(&self) -> bool {
        self.iteration >= self.params.iterations
    }

    /// The current factors (what a checkpoint saves).
    pub fn factors(&self) -> &AlsFactors {
        &self.factors
    }

    /// One full iteration: user rows, then item rows.
    pub fn step(&mut self) {
        let f = self.params.factors;
        let (reg, cg_steps) = (self.params.regularization, self.params.cg_steps);
        solve_side(
            &mut self.factors.user,
            &self.factors.item,
            &self.by_user,
            f,
            reg,
            cg_steps,
        );
        solve_side(
            &mut self.factors.item,
            &self.factors.user,
            &self.by_item,
            f,
            reg,
            cg_steps,
        );
        self.iteration += 1;
    }

    /// The fitted model; `popularity` ranks for users without history and feeds the blend.
    pub fn finish(self, popularity: PopularityModel) -> AlsModel {
        let known_users = (0..self.by_user.len())
            .map(|row| !self.by_user.row(row).0.is_empty())
            .collect();
        AlsModel {
            params: self.params,
            factors: self.factors,
            known_users,
            popularity,
        }
    }
}

/// Fitted ALS factors, ranking items by `user · item`.
#[derive(Debug, Clone)]
pub struct AlsModel {
    params: AlsParams,
    factors: AlsFactors,
    known_users: Vec<bool>,
    popularity: PopularityModel,
}

impl AlsModel {
    /// Fits all iterations at once (no checkpoints).
    pub fn fit(
        dataset: &Dataset,
        popularity: PopularityModel,
        params: AlsParams,
    ) -> Result<AlsModel, ModelError> {
        let mut training = AlsTraining::start(dataset, params)?;
        while !training.is_done() {
            training.step();
        }
        Ok(training.finish(popularity))
    }

    pub fn params(&self) -> &AlsParams {
        &self.params
    }

    pub fn factors(&self) -> &AlsFactors {
        &self.factors
    }

    /// `user · item` for every item, or `None` for a user without history.
    pub fn scores(&self, user: u32) -> Option<Vec<f32>> {
        let user = user as usize;
        if !self.known_users.get(user).copied().unwrap_or(false) {
            return None;
        }
        let f = self.factors.factors;
        let x = &self.factors.user[user * f..(user + 1) * f];
        Some(
            self.factors
                .item
                .chunks_exact(f)
                .map(|y| dot(x, y))
                .collect(),
        )
    }

    fn popular(&self, k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
        self.popularity
            .ranked()
            .iter()
            .filter(|scored| exclude.binary_search(&scored.item).is_err())
            .take(k)
            .copied()
            .collect()
    }
}

impl Recommender for AlsModel {
    fn name(&self) -> &'static str {
        "als"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
        let Some(scores) = self.scores(user) else {
            return self.popular(k, exclude);
        };
        let weight = self.params.popularity_weight;
        if weight == 0.0 {
            let candidates = scores
                .iter()
                .enumerate()
                .map(|(item, &score)| ScoredItem {
                    item: item as u32,
                    score,
                })
                .filter(|scored| exclude.binary_search(&scored.item).is_err())
                .collect();
            return top_k(candidates, k);
        }
        self.blended_top_k(&scores, k, exclude)
    }
}

impl AlsModel {
    /// `popular^w · (personal + 0.01)^(1-w)` (both parts scaled to 0..1), best `k`.
    ///
    /// Walks items from the most popular down and stops once even a perfect personal score
    /// could not lift an item past the k-th best so far: the blend is monotone in popularity,
    /// and in news popularity is so concentrated that a few hundred of tens of thousands of
    /// items are looked at. The result is exactly the full scan's (`blended_top_k_full`).
    fn blended_top_k(&self, scores: &[f32], k: usize, exclude: &[u32]) -> Vec<ScoredItem> {
        if k == 0 {
            return Vec::new();
        }
        let weight = self.params.popularity_weight;
        let max_personal = scores.iter().copied().fold(0.0f32, f32::max);
        let max_popular = self.popularity.max_score();
        if max_popular <= 0.0 {
            // Nothing was clicked in the window: every blend is 0 and dropped.
            return Vec::new();
        }
        // The largest the personal factor can be, with a margin for rounding.
        let personal_ceiling = 1.01f32.powf(1.0 - weight) * (1.0 + 1e-5);
        let mut best: std::collections::BinaryHeap<WorstFirst> =
            std::collections::BinaryHeap::with_capacity(k + 1);
        for scored in self.popularity.ranked() {
            let popular = scored.score / max_popular;
            let popular_part = popular.powf(weight);
            if best.len() == k
                && best
                    .peek()
                    .is_some_and(|worst| popular_part * personal_ceiling < worst.0.score)
            {
                break;
            }
            if exclude.binary_search(&scored.item).is_ok() {
                continue;
            }
            let score = scores[scored.item as usize];
            let personal = if max_personal > 0.0 {
                score.max(0.0) / max_personal
            } else {
                0.0
            };
            // An item nobody reads any more scores 0 and is dropped: in news a stale
            // article is a poor suggestion however well it fits the reader.
            let blended = popular_part * (personal + 0.01).powf(1.0 - weight);
            if blended > 0.0 {
                best.push(WorstFirst(ScoredItem {
                    item: scored.item,
                    score: blended,
                }));
                if best.len() > k {
                    best.pop();
                }
            }
        }
        top_k(best.into_iter().map(|entry| entry.0).collect(), k)
    }
}

/// Orders a heap so its top is the worst item (lowest score, then highest id).
struct WorstFirst(ScoredItem);

impl Ord for WorstFirst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::topk::better(&self.0, &other.0)
    }
}

impl PartialOrd for WorstFirst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for WorstFirst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for WorstFirst {}

/// Users' rows with confidences `1 + alpha · affinity`.
fn user_rows(dataset: &Dataset, alpha: f32) -> Rows {
    let mut offsets = Vec::with_capacity(dataset.n_users() + 1);
    offsets.push(0);
    let mut columns = Vec::with_capacity(dataset.n_pairs());
    let mut confidence = Vec::with_capacity(dataset.n_pairs());
    for user in 0..dataset.n_users() as u32 {
        columns.extend_from_slice(dataset.user_items(user));
        confidence.extend(
            dataset
                .user_affinities(user)
                .iter()
                .map(|affinity| 1.0 + alpha * affinity),
        );
        offsets.push(columns.len());
    }
    Rows {
        offsets,
        columns,
        confidence,
    }
}

/// The same pairs by the other side, each row in ascending column order.
fn transpose(rows: &Rows, n_columns: usize) -> Rows {
    let mut offsets = vec![0usize; n_columns + 1];
    for &column in &rows.columns {
        offsets[column as usize + 1] += 1;
    }
    for column in 0..n_columns {
        offsets[column + 1] += offsets[column];
    }
    let mut cursor = offsets.clone();
    let mut columns = vec![0u32; rows.columns.len()];
    let mut confidence = vec![0f32; rows.columns.len()];
    for row in 0..rows.len() {
        let (cols, confs) = rows.row(row);
        for (&column, &conf) in cols.iter().zip(confs) {
            let at = &mut cursor[column as usize];
            columns[*at] = row as u32;
            confidence[*at] = conf;
            *at += 1;
        }
    }
    Rows {
        offsets,
        columns,
        confidence,
    }
}

/// Seeded uniform values in `[0, 0.01)`, each a function of (seed, side, position) only, so
/// the start does not depend on thread count or on the order rows are visited.
fn initial_factors(seed: u64, side: u64, rows: usize, f: usize) -> Vec<f32> {
    (0..rows * f)
        .map(|at| {
            let bits = splitmix64(seed ^ side.rotate_right(1) ^ (at as u64).wrapping_mul(0x9E37));
            (bits >> 40) as f32 / (1u64 << 24) as f32 * 0.01
        })
        .collect()
}

/// SplitMix64's output function: a well-mixed 64-bit hash of a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows of the Gram matrix are summed per chunk of this many rows, chunks in order.
const GRAM_CHUNK: usize = 4096;

/// `Yᵀ Y + reg · I` (f × f, row-major).
fn gram(fixed: &[f32], f: usize, reg: f32) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = fixed
        .par_chunks(GRAM_CHUNK * f)
        .map(|chunk| {
            let mut partial = vec![0f32; f * f];
            for y in chunk.chunks_exact(f) {
                for (a, &ya) in y.iter().enumerate() {
                    axpy(&mut partial[a * f..(a + 1) * f], ya, y);
                }
            }
            partial
        })
        .collect();
    let mut total = vec![0f32; f * f];
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    for a in 0..f {
        total[a * f + a] += reg;
    }
    total
}

/// Solves every row of `targets` against the fixed side, in place (warm start).
fn solve_side(targets: &mut [f32], fixed: &[f32], rows: &Rows, f: usize, reg: f32, steps: usize) {
    let gram = gram(fixed, f, reg);
    targets.par_chunks_mut(f).enumerate().for_each_init(
        || (vec![0f32; f], vec![0f32; f], vec![0f32; f]),
        |(r, p, ap), (row, x)| {
            let (columns, confidence) = rows.row(row);
            if columns.is_empty() {
                // No observations: the exact solution is the zero vector.
                x.fill(0.0);
                return;
            }
            // r = b − A x, with b = Σ c·y and A = YᵀY + reg·I + Σ (c − 1)·y yᵀ.
            mat_vec(&gram, x, r, f);
            r.iter_mut().for_each(|v| *v = -*v);
            for (&column, &c) in columns.iter().zip(confidence) {
                let y = &fixed[column as usize * f..(column as usize + 1) * f];
                axpy(r, c - (c - 1.0) * dot(y, x), y);
            }
            p.copy_from_slice(r);
            let mut rs_old = dot(r, r);
            for _ in 0..steps {
                if rs_old < 1e-20 {
                    break;
                }
                mat_vec(&gram, p, ap, f);
                for (&column, &c) in columns.iter().zip(confidence) {
                    let y = &fixed[column as usize * f..(column as usize + 1) * f];
                    axpy(ap, (c - 1.0) * dot(y, p), y);
                }
                let step = rs_old / dot(p, ap);
                axpy(x, step, p);
                axpy(r, -step, ap);
                let rs_new = dot(r, r);
                let keep = rs_new / rs_old;
                for (pv, rv) in p.iter_mut().zip(r.iter()) {
                    *pv = rv + keep * *pv;
                }
                rs_old = rs_new;
            }
        },
    );
}

fn mat_vec(matrix: &[f32], v: &[f32], out: &mut [f32], f: usize) {
    for (row, o) in matrix.chunks_exact(f).zip(out.iter_mut()) {
        *o = dot(row, v);
    }
}

/// Dot product in eight independent lanes, so the compiler can vectorise it while the
/// summation order stays fixed (and the result deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interaction, PopularityParams};

    /// Two reader groups with disjoint tastes: users 0..20 read items 0..5, users 20..40 read
    /// items 5..10; each user skips one item of the group's set.
    fn two_groups() -> (Dataset, PopularityModel) {
        let mut clicks = Vec::new();
        for user in 0..40u32 {
            let base = if user < 20 { 0 } else { 5 };
            for item in base..base + 5 {
                if item != base + user % 5 {
                    clicks.push(Interaction {
                        user,
                        item,
                        ts_ms: 1000,
                    });
                }
            }
        }
        let dataset = Dataset::build(41, 10, &clicks, 2000, 0.0);
        let popularity =
            PopularityModel::fit(10, &clicks, 2000, &PopularityParams::default()).unwrap();
        (dataset, popularity)
    }

    /// Two factors and real regularisation: enough to tell the groups apart, too little to
    /// memorise each user's skipped item as a negative.
    fn params() -> AlsParams {
        AlsParams {
            factors: 2,
            regularization: 1.0,
            iterations: 10,
            popularity_weight: 0.0,
            ..AlsParams::default()
        }
    }

    #[test]
    fn recommends_the_missing_item_of_the_users_group() {
        let (dataset, popularity) = two_groups();
        let model = AlsModel::fit(&dataset, popularity, params()).unwrap();
        for user in 0..40u32 {
            let read = dataset.user_items(user);
            let best = model.recommend(user, 1, read)[0].item;
            let group = if user < 20 { 0..5 } else { 5..10 };
            assert!(group.contains(&best), "user {user} got item {best}");
            assert_eq!(best, group.start + user % 5);
        }
        // A user without history gets the popular items.
        assert_eq!(model.recommend(40, 3, &[]).len(), 3);
    }

    #[test]
    fn same_bits_whatever_the_thread_count() {
        let (dataset, _) = two_groups();
        let fit_on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut training = AlsTraining::start(&dataset, params()).unwrap();
                while !training.is_done() {
                    training.step();
                }
                training.factors().clone()
            })
        };
        assert_eq!(fit_on(1), fit_on(3));
    }

    #[test]
    fn resuming_from_a_saved_iteration_gives_the_same_factors() {
        let (dataset, _) = two_groups();
        let mut whole = AlsTraining::start(&dataset, params()).unwrap();
        let mut saved = None;
        while !whole.is_done() {
            whole.step();
            if whole.iteration() == 4 {
                saved = Some(whole.factors().clone());
            }
        }
        let mut resumed = AlsTraining::resume(&dataset, params(), saved.unwrap(), 4).unwrap();
        while !resumed.is_done() {
            resumed.step();
        }
        assert_eq!(resumed.factors(), whole.factors());
    }

    #[test]
    fn bad_parameters_and_mismatched_checkpoints_are_refused() {
        let (dataset, _) = two_groups();
        let zero = AlsParams {
            factors: 0,
            ..params()
        };
        assert!(AlsTraining::start(&dataset, zero).is_err());
        // Iterations and CG steps are bounded as well (a run that would never end is refused).
        for (bad, name) in [
            (
                AlsParams {
                    iterations: 0,
                    ..params()
                },
                "iterations",
            ),
            (
                AlsParams {
                    iterations: 1001,
                    ..params()
                },
                "iterations",
            ),
            (
                AlsParams {
                    cg_steps: 101,
                    ..params()
                },
                "cg_steps",
            ),
        ] {
            assert!(
                matches!(bad.validate(), Err(ModelError::InvalidParameter { name: n, .. }) if n == name),
                "{bad:?}"
            );
            assert!(AlsTraining::start(&dataset, bad).is_err());
        }
        let other = AlsTraining::start(
            &dataset,
            AlsParams {
                factors: 3,
                ..params()
            },
        )
        .unwrap();
        let error = AlsTraining::resume(&dataset, params(), other.factors().clone(), 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("saved factors"), "{error}");
    }

    /// The blend over every item, as it was computed before the pruned walk.
    fn blended_top_k_full(
        model: &AlsModel,
        scores: &[f32],
        k: usize,
        exclude: &[u32],
    ) -> Vec<ScoredItem> {
        let weight = model.params.popularity_weight;
        let max_personal = scores.iter().copied().fold(0.0f32, f32::max);
        let max_popular = model.popularity.max_score();
        let candidates = scores
            .iter()
            .enumerate()
            .filter(|(item, _)| exclude.binary_search(&(*item as u32)).is_err())
            .filter_map(|(item, &score)| {
                let popular = if max_popular > 0.0 {
                    model.popularity.score(item as u32) / max_popular
                } else {
                    0.0
                };
                let personal = if max_personal > 0.0 {
                    score.max(0.0) / max_personal
                } else {
                    0.0
                };
                let blended = popular.powf(weight) * (personal + 0.01).powf(1.0 - weight);
                (blended > 0.0).then_some(ScoredItem {
                    item: item as u32,
                    score: blended,
                })
            })
            .collect();
        top_k(candidates, k)
    }

    proptest::proptest! {
        #[test]
        fn the_pruned_blend_equals_the_full_scan(
            clicks in proptest::collection::vec((0u32..30, 0u32..60, 0i64..100), 1..300),
            weight in 0.05f32..1.0,
            k in 0usize..25,
            exclude in proptest::collection::btree_set(0u32..60, 0..10),
        ) {
            let interactions: Vec<Interaction> = clicks
                .iter()
                .map(|&(user, item, hour)| Interaction { user, item, ts_ms: hour * 3_600_000 })
                .collect();
            let anchor = 100 * 3_600_000;
            let dataset = Dataset::build(30, 60, &interactions, anchor, 24.0 * 3_600_000.0);
            let popularity = PopularityModel::fit(
                60,
                &interactions,
                anchor,
                &PopularityParams { half_life_hours: 6.0 },
            )
            .unwrap();
            let params = AlsParams {
                factors: 4,
                iterations: 2,
                popularity_weight: weight,
                ..AlsParams::default()
            };
            let model = AlsModel::fit(&dataset, popularity, params).unwrap();
            let exclude: Vec<u32> = exclude.into_iter().collect();
            for user in 0..30u32 {
                if let Some(scores) = model.scores(user) {
                    proptest::prop_assert_eq!(
                        model.blended_top_k(&scores, k, &exclude),
                        blended_top_k_full(&model, &scores, k, &exclude)
                    );
                }
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }
}
