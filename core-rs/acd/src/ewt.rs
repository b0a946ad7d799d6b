//! The estimated wait a queue announces to a caller (seed 002: "approximate wait N min").
//!
//! The model is Erlang A (M/M/N+M): `n` operators work the queue (Ready, ringing, talking or
//! in wrap-up: all will take its calls again), each frees up at rate `1/aht`; a caller
//! ahead leaves at rate `theta` (impatience). A caller with `k` calls ahead is served after
//! the line has moved `k` times and then an operator frees up:
//!
//! ```text
//! E[W | k ahead] = sum_{j=0..k} 1 / (n/aht + j*theta)
//! ```
//!
//! The two rates are learned per queue with a long memory, so a queue served by five
//! operators is not thrown about by the last twenty calls, and the handle time is not
//! biased by the queue's own state (the calls that built a queue are not over-weighted):
//! - handle time (talk + wrap-up): an exponentially forgetting mean over about the last
//!   `HANDLE_MEMORY` calls, starting from a prior (the configured expectation) worth
//!   `PRIOR_WEIGHT` calls that is forgotten like any call, so a cold node says something
//!   sensible and a warm one only what it saw;
//! - patience: abandons over the time callers spent at risk of abandoning (every wait that
//!   ended, answered or not), the censored-exponential estimate, over about the last
//!   `PATIENCE_MEMORY` waits.
//!
//! Pure arithmetic: the engine feeds outcomes and asks for estimates.

/// Calls of handle-time memory (the forgetting factor is 1 - 1/this), at least; a queue
/// with many operators remembers `HANDLE_MEMORY_PER_OPERATOR` calls each (its long queues
/// multiply the handle time's error by the position, so they need a steadier mean).
pub const HANDLE_MEMORY: f64 = 300.0;
pub const HANDLE_MEMORY_PER_OPERATOR: f64 = 40.0;
/// How many calls' worth the prior handle time counts for against what was seen.
pub const PRIOR_WEIGHT: f64 = 10.0;
/// Waits of patience memory.
pub const PATIENCE_MEMORY: f64 = 500.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitModel {
    handled: f64,
    handle_sum_s: f64,
    at_risk_s: f64,
    abandoned: f64,
}

impl WaitModel {
    /// `prior_aht_s`: the handle time (talk + wrap-up) expected before any call was seen.
    pub fn new(prior_aht_s: f64) -> Self {
        let prior = prior_aht_s.max(1.0);
        WaitModel {
            handled: PRIOR_WEIGHT,
            handle_sum_s: PRIOR_WEIGHT * prior,
            at_risk_s: 0.0,
            abandoned: 0.0,
        }
    }

    /// A call was handled in `seconds` (talk and wrap-up) while `working` operators served
    /// the queue.
    pub fn handled(&mut self, seconds: f64, working: u32) {
        let memory = HANDLE_MEMORY.max(HANDLE_MEMORY_PER_OPERATOR * f64::from(working));
        let keep = 1.0 - 1.0 / memory;
        self.handled = self.handled * keep + 1.0;
        self.handle_sum_s = self.handle_sum_s * keep + seconds.max(0.0);
    }

    /// A caller's wait in the queue ended after `seconds`: answered, or abandoned.
    pub fn wait_ended(&mut self, seconds: f64, abandoned: bool) {
        let keep = 1.0 - 1.0 / PATIENCE_MEMORY;
        self.at_risk_s = self.at_risk_s * keep + seconds.max(0.0);
        self.abandoned = self.abandoned * keep + if abandoned { 1.0 } else { 0.0 };
    }

    /// Mean handle time now, seconds: the prior and what was seen, the older the less.
    pub fn aht(&self) -> f64 {
        self.handle_sum_s / self.handled
    }

    /// Abandon rate of a waiting caller, per second (0 until one has abandoned).
    pub fn patience_rate(&self) -> f64 {
        if self.at_risk_s > 0.0 {
            self.abandoned / self.at_risk_s
        } else {
            0.0
        }
    }

    /// Expected wait, seconds, of a caller with `ahead` calls before it while `working`
    /// operators serve the queue and none is free; None when nobody works it (unknown).
    pub fn estimate(&self, ahead: usize, working: u32) -> Option<f64> {
        erlang_a_wait(ahead, working, self.aht(), self.patience_rate())
    }
}

/// E[W] for a caller with `ahead` callers before it, `working` operators each finishing at
/// rate `1/aht_s`, callers ahead leaving at `theta` per second; None with nobody working.
pub fn erlang_a_wait(ahead: usize, working: u32, aht_s: f64, theta: f64) -> Option<f64> {
    if working == 0 || aht_s.is_nan() || aht_s <= 0.0 {
        return None;
    }
    let service = f64::from(working) / aht_s;
    Some(
        (0..=ahead)
            .map(|j| 1.0 / (service + j as f64 * theta.max(0.0)))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_impatience_each_caller_ahead_costs_one_service_interval() {
        // 5 operators, 200 s each: one frees every 40 s
        let w = erlang_a_wait(0, 5, 200.0, 0.0).unwrap();
        assert!((w - 40.0).abs() < 1e-9);
        let w = erlang_a_wait(4, 5, 200.0, 0.0).unwrap();
        assert!((w - 200.0).abs() < 1e-9);
    }

    #[test]
    fn impatient_callers_ahead_shorten_the_wait_but_never_to_zero() {
        let patient = erlang_a_wait(9, 5, 200.0, 0.0).unwrap();
        let impatient = erlang_a_wait(9, 5, 200.0, 1.0 / 120.0).unwrap();
        assert!(impatient < patient && impatient > 40.0, "{impatient}");
    }

    #[test]
    fn nobody_working_is_unknown_not_zero() {
        assert_eq!(erlang_a_wait(3, 0, 200.0, 0.0), None);
        assert_eq!(WaitModel::new(180.0).estimate(0, 0), None);
    }

    #[test]
    fn a_cold_model_answers_from_its_prior_and_learns_with_a_long_memory() {
        let mut m = WaitModel::new(180.0);
        assert!((m.aht() - 180.0).abs() < 1e-9);
        assert!(m.estimate(0, 5).unwrap() > 30.0); // never "0 minutes" behind busy operators
        for _ in 0..2000 {
            m.handled(300.0, 5);
        }
        assert!((m.aht() - 300.0).abs() < 1.0);
        // twenty short calls move it by a few percent, not to their mean
        for _ in 0..20 {
            m.handled(60.0, 5);
        }
        assert!(m.aht() > 280.0, "{}", m.aht());
    }

    #[test]
    fn patience_is_abandons_over_time_at_risk() {
        let mut m = WaitModel::new(180.0);
        for _ in 0..50 {
            m.wait_ended(90.0, true);
            m.wait_ended(30.0, false);
        }
        // 50 abandons over 6,000 s at risk (forgetting aside): 1 / 120 s
        assert!(
            (m.patience_rate() - 1.0 / 120.0).abs() < 0.0005,
            "{}",
            m.patience_rate()
        );
    }
}
