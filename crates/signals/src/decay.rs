//! An exponentially decayed count kept as one number and the event time it is valid at.
//!
//! Adding a click at `t` first ages the stored value to `t` (or, for a late click, ages the
//! click to the stored time), so the count is `Σ 2^-(now - t_i)/half_life` over every click
//! without remembering the clicks themselves.

/// A decayed count valid at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decayed {
    value: f64,
    at_ms: i64,
}

/// `2^-(Δt / half_life)`.
pub(crate) fn factor(delta_ms: i64, half_life_ms: i64) -> f64 {
    (-(delta_ms as f64) / half_life_ms as f64).exp2()
}

impl Decayed {
    pub(crate) fn new(weight: f64, at_ms: i64) -> Decayed {
        Decayed {
            value: weight,
            at_ms,
        }
    }

    /// Adds `weight` observed at `ts_ms`.
    pub(crate) fn add(&mut self, weight: f64, ts_ms: i64, half_life_ms: i64) {
        if ts_ms >= self.at_ms {
            self.value = self.value * factor(ts_ms - self.at_ms, half_life_ms) + weight;
            self.at_ms = ts_ms;
        } else {
            self.value += weight * factor(self.at_ms - ts_ms, half_life_ms);
        }
    }

    /// Event time of the newest click counted.
    pub(crate) fn at_ms(&self) -> i64 {
        self.at_ms
    }

    /// The count as seen at `now_ms` (never grows for a `now` before the last click).
    pub(crate) fn at(&self, now_ms: i64, half_life_ms: i64) -> f64 {
        if now_ms <= self.at_ms {
            self.value
        } else {
            self.value * factor(now_ms - self.at_ms, half_life_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the arrival order, the stored count equals the direct sum over clicks.
        #[test]
        fn equals_the_direct_sum_in_any_order(times in proptest::collection::vec(0i64..10_000_000, 1..40)) {
            let half_life = 3_600_000;
            let mut decayed = Decayed::new(1.0, times[0]);
            for &t in &times[1..] {
                decayed.add(1.0, t, half_life);
            }
            let now = 20_000_000;
            let direct: f64 = times.iter().map(|&t| factor(now - t, half_life)).sum();
            let stored = decayed.at(now, half_life);
            prop_assert!((stored - direct).abs() <= 1e-9 * direct.max(1.0), "{stored} vs {direct}");
        }
    }

    #[test]
    fn halves_after_one_half_life() {
        let decayed = Decayed::new(8.0, 0);
        assert!((decayed.at(1000, 1000) - 4.0).abs() < 1e-12);
        assert!((decayed.at(3000, 1000) - 1.0).abs() < 1e-12);
    }
}
