//! The per-series baseline: additive Holt-Winters (level, trend, optional season) with a
//! robust deviation estimate, and the firing/resolved state machine on top of it.
//!
//! Each point is first judged against the one-step-ahead forecast made before it arrived,
//! then learned. Learning is robust (after Gelper, Fried & Croux, "Robust forecasting with
//! exponential and Holt-Winters smoothing", 2010): the error is clamped to ±[`HUBER_K`]
//! deviations before it updates level, trend, season and deviation, so a spike moves the
//! baseline by at most a couple of deviations instead of dragging it (and widening the band)
//! by its full height. A lasting shift is still learned, a bounded step at a time, as the
//! deviation grows under repeated large errors; that is how a step change eventually resolves.
//!
//! State is a fixed number of floats per series (plus `season` of them), so memory is bounded.

use super::config::AnomalyConfig;

/// Errors beyond this many deviations are learned as if they were this large.
pub const HUBER_K: f64 = 2.0;
/// Ratio of the standard deviation to the mean absolute deviation for normal noise, so
/// `sensitivity` reads as "standard deviations".
pub const MAD_TO_SIGMA: f64 = 1.2533;

#[derive(Clone, Debug)]
pub struct Params {
    pub season: usize,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub deviation_alpha: f64,
    pub sensitivity: f64,
    pub min_deviation: f64,
    pub min_consecutive: usize,
    pub warmup: usize,
}

impl Params {
    pub fn from_config(cfg: &AnomalyConfig) -> Self {
        Params {
            season: cfg.season,
            alpha: cfg.alpha,
            beta: cfg.beta,
            gamma: cfg.gamma,
            deviation_alpha: cfg.deviation_alpha,
            sensitivity: cfg.sensitivity,
            min_deviation: cfg.min_deviation,
            min_consecutive: cfg.min_consecutive,
            warmup: cfg.warmup(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Firing(Side),
    Resolved(Side),
}

/// How one point was judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub value: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Past warm-up: the band is trustworthy and alerts are possible.
    pub warm: bool,
    pub event: Option<Event>,
}

impl Evaluation {
    /// The band edge on `side`, reported as `alert.threshold`.
    pub fn edge(&self, side: Side) -> f64 {
        match side {
            Side::Above => self.upper,
            Side::Below => self.lower,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    /// Points learned so far.
    n: u64,
    level: f64,
    trend: f64,
    /// One additive offset per position in the period; empty without a season.
    seasonal: Box<[f64]>,
    /// Mean absolute one-step forecast error.
    mad: f64,
    outside_run: usize,
    inside_run: usize,
    firing: Option<Side>,
}

impl Model {
    pub fn new(p: &Params) -> Self {
        Model {
            n: 0,
            level: 0.0,
            trend: 0.0,
            seasonal: vec![0.0; p.season].into_boxed_slice(),
            mad: 0.0,
            outside_run: 0,
            inside_run: 0,
            firing: None,
        }
    }

    pub fn firing(&self) -> Option<Side> {
        self.firing
    }

    /// Judges `y` against the forecast, then learns it. `None` while there is no forecast
    /// yet (the first point, or the first season that initialises the seasonal profile).
    pub fn observe(&mut self, y: f64, p: &Params) -> Option<Evaluation> {
        let m = self.seasonal.len();
        let n = self.n;
        self.n += 1;
        if m > 0 && (n as usize) < m {
            // The first period is stored raw; at its end the level is its mean and the
            // seasonal offsets are the deviations from it.
            self.seasonal[n as usize] = y;
            if n as usize + 1 == m {
                let mean = self.seasonal.iter().sum::<f64>() / m as f64;
                self.level = mean;
                for s in self.seasonal.iter_mut() {
                    *s -= mean;
                }
            }
            return None;
        }
        if m == 0 && n == 0 {
            self.level = y;
            return None;
        }
        let slot = if m > 0 { (n as usize) % m } else { 0 };
        let s = self.seasonal.get(slot).copied().unwrap_or(0.0);
        let expected = self.level + self.trend + s;
        let sigma = (MAD_TO_SIGMA * self.mad).max(p.min_deviation);
        let half = p.sensitivity * sigma;
        let (lower, upper) = (expected - half, expected + half);
        let warm = n as usize >= p.warmup;
        let error = y - expected;

        let event = if warm {
            self.step_state(error, half, p)
        } else {
            None
        };

        // Forecasts made so far (this one included): drives the warm-up's running averages.
        let forecasts = (n as usize + 1 - m.max(1)) as f64;
        let (alpha, gamma, dev_alpha) = if warm {
            (p.alpha, p.gamma, p.deviation_alpha)
        } else {
            // Running means at first (weights 1/k), so the estimates settle within the
            // warm-up instead of creeping up from zero.
            let cycles = (n as usize).checked_div(m).map_or(1.0, |c| c as f64);
            (
                p.alpha.max(1.0 / (forecasts + 1.0)),
                p.gamma.max(1.0 / (cycles + 1.0)),
                p.deviation_alpha.max(1.0 / forecasts),
            )
        };
        let clamped = if warm && sigma > 0.0 {
            error.clamp(-HUBER_K * sigma, HUBER_K * sigma)
        } else {
            // No scale yet (warm-up, or a series that never moved): learn the point as is,
            // else a flat series that steps would never learn its new level.
            error
        };
        let cleaned = expected + clamped;
        let previous_level = self.level;
        self.level = alpha * (cleaned - s) + (1.0 - alpha) * (self.level + self.trend);
        self.trend = p.beta * (self.level - previous_level) + (1.0 - p.beta) * self.trend;
        if let Some(slot) = self.seasonal.get_mut(slot) {
            *slot = gamma * (cleaned - self.level) + (1.0 - gamma) * s;
        }
        self.mad = dev_alpha * clamped.abs() + (1.0 - dev_alpha) * self.mad;
        let next_half = p.sensitivity * MAD_TO_SIGMA * self.mad;
        let finite = (self.level.abs() + self.trend.abs() + next_half).is_finite()
            && self.seasonal.iter().all(|s| s.is_finite());
        if !finite {
            // Values near f64's range overflowed the forecast or its band: start this series
            // over rather than carry infinities (which would silence it for good).
            *self = Model::new(p);
        }
        Some(Evaluation {
            value: y,
            expected,
            lower,
            upper,
            warm,
            event,
        })
    }

    /// `min_consecutive` points outside fire; as many back inside resolve.
    fn step_state(&mut self, error: f64, half: f64, p: &Params) -> Option<Event> {
        if error.abs() > half {
            self.outside_run += 1;
            self.inside_run = 0;
            let side = if error > 0.0 {
                Side::Above
            } else {
                Side::Below
            };
            if self.firing.is_none() && self.outside_run >= p.min_consecutive {
                self.firing = Some(side);
                return Some(Event::Firing(side));
            }
            None
        } else {
            self.outside_run = 0;
            let side = self.firing?;
            self.inside_run += 1;
            if self.inside_run >= p.min_consecutive {
                self.firing = None;
                self.inside_run = 0;
                return Some(Event::Resolved(side));
            }
            None
        }
    }
}
