//! When the runner interrupts a start: never, after a fixed time, or at random with a fixed
//! chance each second (a seeded draw, so a run can be repeated).

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::SpotError;

/// How starts are interrupted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interruptions {
    Never,
    /// Each start after this long.
    Every(Duration),
    /// In each second a start runs, with this probability (0..1], drawn from `seed`.
    Random {
        probability: f64,
        seed: u64,
    },
}

impl Interruptions {
    pub(super) fn validate(&self) -> Result<(), SpotError> {
        match *self {
            Interruptions::Every(every) if every.is_zero() => Err(SpotError::InvalidOptions(
                "--interrupt-every must be > 0".into(),
            )),
            Interruptions::Random { probability, .. }
                if !(probability > 0.0 && probability <= 1.0) =>
            {
                Err(SpotError::InvalidOptions(format!(
                    "--interrupt-prob must be in (0, 1], got {probability}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The running draw of [`Interruptions`].
pub(super) enum Schedule {
    Never,
    Every(Duration),
    /// Each whole second with probability p.
    Random {
        p: f64,
        rng: Box<StdRng>,
    },
}

impl Schedule {
    pub(super) fn new(interruptions: &Interruptions) -> Schedule {
        match *interruptions {
            Interruptions::Never => Schedule::Never,
            Interruptions::Every(every) => Schedule::Every(every),
            Interruptions::Random { probability, seed } => Schedule::Random {
                p: probability,
                rng: Box::new(StdRng::seed_from_u64(seed)),
            },
        }
    }

    /// How long the next start runs before it is interrupted; `None`: it is not.
    pub(super) fn next_interruption(&mut self) -> Option<Duration> {
        match self {
            Schedule::Never => None,
            Schedule::Every(every) => Some(*every),
            Schedule::Random { p, rng } => {
                // Seconds until the first success of a Bernoulli(p) per second (geometric).
                let mut seconds = 1u64;
                while !rng.random_bool(*p) {
                    seconds += 1;
                    if seconds > 366 * 86_400 {
                        return None;
                    }
                }
                Some(Duration::from_secs(seconds))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_schedules_repeat_with_the_seed() {
        let draw = |seed| {
            let mut schedule = Schedule::new(&Interruptions::Random {
                probability: 0.2,
                seed,
            });
            (0..20)
                .map(|_| schedule.next_interruption().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut certain = Schedule::new(&Interruptions::Random {
            probability: 1.0,
            seed: 1,
        });
        assert_eq!(certain.next_interruption(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn schedules_that_cannot_run_are_refused() {
        let refused = |interruptions: Interruptions| interruptions.validate().unwrap_err();
        let error = refused(Interruptions::Every(Duration::ZERO));
        assert!(error.to_string().contains("--interrupt-every"), "{error}");
        for probability in [0.0, -0.5, 1.5, f64::NAN] {
            let error = refused(Interruptions::Random {
                probability,
                seed: 1,
            });
            assert!(error.to_string().contains("--interrupt-prob"), "{error}");
        }
        assert!(Interruptions::Never.validate().is_ok());
        assert!(
            Interruptions::Random {
                probability: 1.0,
                seed: 1
            }
            .validate()
            .is_ok()
        );
    }
}
