//! Queueing math for staffing and service-level forecasts: Erlang B, Erlang C, Erlang A.
//!
//! Every function takes plain numbers and returns a finite value or a [`MathError`]: no
//! NaN or infinity leaves this module. Erlang C is computed through the Erlang B
//! recursion, which is stable for thousands of agents; Erlang A sums the stationary
//! distribution of its birth-death chain in log space.
//!
//! Units: `traffic` in erlangs (arrival rate × mean handling time), times in seconds.

use std::fmt;

/// Inputs outside the domain of a formula.
#[derive(Clone, Debug, PartialEq)]
pub enum MathError {
    /// A value that must be finite and positive (or non-negative) is not.
    OutOfDomain {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// Traffic is at or above the number of agents: the queue grows without bound, so
    /// waiting time and service level have no steady state (Erlang C without abandonment).
    Unstable { agents: u32, traffic: f64 },
    /// No staffing up to the search limit meets the target.
    TargetUnreachable { limit: u32 },
}

impl fmt::Display for MathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MathError::OutOfDomain { name, value, expected } => {
                write!(f, "{name} = {value}: expected {expected}")
            }
            MathError::Unstable { agents, traffic } => write!(
                f,
                "{traffic} erlangs on {agents} agents: traffic must be below the number of agents for a steady state"
            ),
            MathError::TargetUnreachable { limit } => {
                write!(f, "target not reached with up to {limit} agents")
            }
        }
    }
}

impl std::error::Error for MathError {}

/// The most agents a staffing search considers.
pub const STAFFING_LIMIT: u32 = 1_000_000;

fn non_negative(name: &'static str, value: f64) -> Result<f64, MathError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(MathError::OutOfDomain {
            name,
            value,
            expected: "a finite number ≥ 0",
        })
    }
}

fn positive(name: &'static str, value: f64) -> Result<f64, MathError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(MathError::OutOfDomain {
            name,
            value,
            expected: "a finite number > 0",
        })
    }
}

fn agents_at_least_one(agents: u32) -> Result<u32, MathError> {
    if agents >= 1 {
        Ok(agents)
    } else {
        Err(MathError::OutOfDomain {
            name: "agents",
            value: 0.0,
            expected: "at least 1",
        })
    }
}

/// Erlang B: probability that a call finds all `agents` busy and is lost (no queue).
pub fn erlang_b(agents: u32, traffic: f64) -> Result<f64, MathError> {
    let a = non_negative("traffic", traffic)?;
    let mut b = 1.0;
    for k in 1..=agents {
        b = a * b / (f64::from(k) + a * b);
    }
    Ok(b)
}

/// Erlang C: probability that a call waits (queue without abandonment). 1.0 when unstable.
pub fn erlang_c(agents: u32, traffic: f64) -> Result<f64, MathError> {
    let n = agents_at_least_one(agents)?;
    let a = non_negative("traffic", traffic)?;
    if a >= f64::from(n) {
        return Ok(1.0);
    }
    Ok(erlang_c_from_b(n, a, erlang_b(n, a)?))
}

fn erlang_c_from_b(n: u32, a: f64, b: f64) -> f64 {
    let n = f64::from(n);
    (n * b / (n - a * (1.0 - b))).clamp(0.0, 1.0)
}

/// Forecast of an Erlang C queue (no abandonment).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangCForecast {
    /// Probability that a call waits at all.
    pub p_wait: f64,
    /// Average speed of answer, seconds, over all calls.
    pub asa: f64,
    /// Fraction of calls answered within the service-level threshold.
    pub service_level: f64,
    /// Agents' busy fraction.
    pub occupancy: f64,
}

/// Erlang C forecast for `agents`, `traffic` erlangs, mean handling time `aht` seconds and
/// a service-level threshold of `sl_seconds`.
pub fn erlang_c_forecast(
    agents: u32,
    traffic: f64,
    aht: f64,
    sl_seconds: f64,
) -> Result<ErlangCForecast, MathError> {
    let n = agents_at_least_one(agents)?;
    let a = non_negative("traffic", traffic)?;
    let aht = positive("aht", aht)?;
    let t = non_negative("sl_seconds", sl_seconds)?;
    if a >= f64::from(n) {
        return Err(MathError::Unstable {
            agents: n,
            traffic: a,
        });
    }
    let c = erlang_c(n, a)?;
    let spare = f64::from(n) - a;
    Ok(ErlangCForecast {
        p_wait: c,
        asa: c * aht / spare,
        service_level: (1.0 - c * (-spare * t / aht).exp()).clamp(0.0, 1.0),
        occupancy: a / f64::from(n),
    })
}

/// What a staffing search must reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StaffingTarget {
    /// At least this fraction answered within `seconds` (e.g. 0.8 within 20 s).
    ServiceLevel { fraction: f64, seconds: f64 },
    /// Average speed of answer at most this many seconds.
    Asa { seconds: f64 },
    /// Abandonment at most this fraction (Erlang A only).
    AbandonRate { fraction: f64 },
}

/// Fewest agents meeting `target` under Erlang C (no abandonment).
pub fn erlang_c_staffing(traffic: f64, aht: f64, target: StaffingTarget) -> Result<u32, MathError> {
    let a = non_negative("traffic", traffic)?;
    let aht = positive("aht", aht)?;
    match target {
        StaffingTarget::ServiceLevel { fraction, seconds } => {
            check_fraction("service level fraction", fraction)?;
            non_negative("seconds", seconds)?;
        }
        StaffingTarget::Asa { seconds } => {
            non_negative("seconds", seconds)?;
        }
        StaffingTarget::AbandonRate { fraction } => {
            return Err(MathError::OutOfDomain {
                name: "abandon rate target",
                value: fraction,
                expected: "an Erlang A search (Erlang C has no abandonment)",
            })
        }
    }
    // Walk n upward carrying the Erlang B recursion: O(n) in all.
    let mut b = 1.0;
    for n in 1..=STAFFING_LIMIT {
        b = a * b / (f64::from(n) + a * b);
        if a >= f64::from(n) {
            continue;
        }
        let c = erlang_c_from_b(n, a, b);
        let spare = f64::from(n) - a;
        let met = match target {
            StaffingTarget::ServiceLevel { fraction, seconds } => {
                1.0 - c * (-spare * seconds / aht).exp() >= fraction
            }
            StaffingTarget::Asa { seconds } => c * aht / spare <= seconds,
            StaffingTarget::AbandonRate { .. } => unreachable!("refused above"),
        };
        if met {
            return Ok(n);
        }
    }
    Err(MathError::TargetUnreachable {
        limit: STAFFING_LIMIT,
    })
}

fn check_fraction(name: &'static str, v: f64) -> Result<f64, MathError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(MathError::OutOfDomain {
            name,
            value: v,
            expected: "a fraction from 0 to 1",
        })
    }
}

/// Forecast of an Erlang A queue (M/M/n+M: callers abandon after an exponential patience).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangAForecast {
    /// Probability that an arriving call has to wait.
    pub p_wait: f64,
    /// Fraction of calls that abandon.
    pub p_abandon: f64,
    /// Mean wait over all calls, seconds (abandoned ones until they hang up).
    pub mean_wait: f64,
    /// Fraction answered within `sl_seconds`, over all calls offered.
    pub service_level: f64,
    /// Agents' busy fraction.
    pub occupancy: f64,
}

/// Erlang A for `agents`, `calls_per_hour`, mean handling time `aht` and mean patience,
/// both in seconds, with a service-level threshold of `sl_seconds`.
pub fn erlang_a(
    agents: u32,
    calls_per_hour: f64,
    aht: f64,
    patience: f64,
    sl_seconds: f64,
) -> Result<ErlangAForecast, MathError> {
    let n = agents_at_least_one(agents)?;
    let lambda = non_negative("calls_per_hour", calls_per_hour)? / 3600.0;
    let mu = 1.0 / positive("aht", aht)?;
    let theta = 1.0 / positive("patience", patience)?;
    let t = non_negative("sl_seconds", sl_seconds)?;
    if lambda == 0.0 {
        return Ok(ErlangAForecast {
            p_wait: 0.0,
            p_abandon: 0.0,
            mean_wait: 0.0,
            service_level: 1.0,
            occupancy: 0.0,
        });
    }
    // Stationary distribution of the chain: birth λ, death min(k,n)μ + max(k−n,0)θ.
    // log p_k up to a constant; the tail beyond n is summed until it is negligible.
    let nf = f64::from(n);
    let mut log_p: Vec<f64> = Vec::with_capacity(n as usize + 64);
    log_p.push(0.0);
    let mut max_log = 0.0_f64;
    let mut k: u64 = 0;
    loop {
        k += 1;
        let kf = k as f64;
        let death = kf.min(nf) * mu + (kf - nf).max(0.0) * theta;
        let next = log_p[log_p.len() - 1] + (lambda / death).ln();
        log_p.push(next);
        max_log = max_log.max(next);
        // Past n and past the mode, terms only shrink (ratio λ/death < 1 and falling).
        if kf > nf && lambda < death && next < max_log - 60.0 {
            break;
        }
        if log_p.len() > 50_000_000 {
            return Err(MathError::OutOfDomain {
                name: "calls_per_hour",
                value: calls_per_hour,
                expected: "a load whose queue tail fits in 50 million states",
            });
        }
    }
    let z: f64 = log_p.iter().map(|l| (l - max_log).exp()).sum();
    let p = |k: usize| (log_p[k] - max_log).exp() / z;
    let n_us = n as usize;
    let mut p_wait = 0.0;
    let mut queue_len = 0.0;
    let mut busy = 0.0;
    // P(answered within t | arrive to state k ≥ n): the caller is answered before t if the
    // k−n+1 departures ahead (each at rate nμ+jθ) happen before its own patience runs out.
    // We use the standard approximation of the wait of a queued caller by the conditional
    // exponential of rate nμ+(k−n)θ per position, summed in log space.
    let mut sl_missed = 0.0;
    for (i, _) in log_p.iter().enumerate() {
        let pk = p(i);
        if i >= n_us {
            p_wait += pk;
            queue_len += (i - n_us) as f64 * pk;
            sl_missed += pk * prob_wait_exceeds(i - n_us, nf * mu, theta, t);
        }
        busy += (i.min(n_us)) as f64 * pk;
    }
    let p_abandon = (theta * queue_len / lambda).clamp(0.0, 1.0);
    Ok(ErlangAForecast {
        p_wait: p_wait.clamp(0.0, 1.0),
        p_abandon,
        mean_wait: queue_len / lambda,
        service_level: (1.0 - sl_missed).clamp(0.0, 1.0),
        occupancy: (busy / nf).clamp(0.0, 1.0),
    })
}

/// For a caller arriving with `ahead` callers queued before it: the probability that it is
/// neither answered nor gone before `t` seconds, i.e. still waiting at `t` or answered later.
/// Positions advance at rate `service` (nμ) plus the abandonment of the callers ahead;
/// the caller itself abandons at rate `theta`. A caller that abandons before `t` counts as
/// missing the service level too, so this returns P(not answered by t).
fn prob_wait_exceeds(ahead: usize, service: f64, theta: f64, t: f64) -> f64 {
    if t == 0.0 {
        return 1.0;
    }
    // The caller is answered after ahead+1 phases; in phase j (j callers still ahead,
    // counting down) the phase ends by an answer or an abandonment ahead at rate
    // service + jθ, and the caller itself abandons at rate θ throughout.
    // P(answered by t) = P(sum of phases ≤ t and own patience > that sum). We compute it
    // by uniformising the chain of phases plus an absorbing "abandoned" state.
    let phases = ahead + 1;
    let rates: Vec<f64> = (0..phases)
        .map(|j| service + (ahead - j) as f64 * theta)
        .collect();
    let max_rate = rates.iter().fold(0.0_f64, |m, r| m.max(r + theta));
    let lt = max_rate * t;
    // Poisson-weighted transient probabilities (uniformisation) with a truncation at
    // mean + 10 sd, enough for 1e-12 accuracy at the rates seen here.
    let terms = (lt + 10.0 * lt.sqrt() + 20.0).ceil() as usize;
    let mut state = vec![0.0_f64; phases + 2]; // phases..., answered, abandoned
    state[0] = 1.0;
    let mut answered = 0.0;
    let mut log_w = -lt; // log Poisson weight for m = 0
    for m in 0..=terms {
        let w = log_w.exp();
        answered += w * state[phases];
        // one uniformised step
        let mut next = vec![0.0_f64; phases + 2];
        for (j, &r) in rates.iter().enumerate() {
            let s = state[j];
            if s == 0.0 {
                continue;
            }
            let leave = r / max_rate;
            let give_up = theta / max_rate;
            next[j + 1] += s * leave;
            next[phases + 1] += s * give_up;
            next[j] += s * (1.0 - leave - give_up);
        }
        next[phases] += state[phases];
        next[phases + 1] += state[phases + 1];
        state = next;
        log_w += lt.ln() - ((m + 1) as f64).ln();
    }
    (1.0 - answered).clamp(0.0, 1.0)
}

/// Fewest agents meeting `target` under Erlang A.
pub fn erlang_a_staffing(
    calls_per_hour: f64,
    aht: f64,
    patience: f64,
    target: StaffingTarget,
) -> Result<u32, MathError> {
    let lambda = non_negative("calls_per_hour", calls_per_hour)?;
    let aht = positive("aht", aht)?;
    let patience = positive("patience", patience)?;
    let sl_seconds = match target {
        StaffingTarget::ServiceLevel { fraction, seconds } => {
            check_fraction("service level fraction", fraction)?;
            non_negative("seconds", seconds)?
        }
        StaffingTarget::Asa { seconds } => non_negative("seconds", seconds)?,
        StaffingTarget::AbandonRate { fraction } => {
            check_fraction("abandon rate", fraction)?;
            0.0
        }
    };
    let met = |n: u32| -> Result<bool, MathError> {
        let f = erlang_a(n, lambda, aht, patience, sl_seconds)?;
        Ok(match target {
            StaffingTarget::ServiceLevel { fraction, .. } => f.service_level >= fraction,
            StaffingTarget::Asa { seconds } => f.mean_wait <= seconds,
            StaffingTarget::AbandonRate { fraction } => f.p_abandon <= fraction,
        })
    };
    // Each measure improves with n: find a bracket by doubling, then bisect.
    let (mut lo, mut hi) = (0u32, 1u32);
    while !met(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi > STAFFING_LIMIT {
            return Err(MathError::TargetUnreachable {
                limit: STAFFING_LIMIT,
            });
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if met(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn erlang_c_golden_500_agents() {
        let c = erlang_c(500, 487.0).unwrap();
        assert!(close(c, 0.446475, 5e-6), "{c}");
    }

    #[test]
    fn erlang_c_textbook_values() {
        // 10 agents, 8 erlangs: P(wait) 0.409, ASA with AHT 180 s: 36.8 s,
        // SL(20 s) = 1 − 0.40918·e^(−2·20/180) = 0.6724.
        let f = erlang_c_forecast(10, 8.0, 180.0, 20.0).unwrap();
        assert!(close(f.p_wait, 0.4092, 1e-4), "{f:?}");
        assert!(close(f.asa, 36.83, 0.01), "{f:?}");
        assert!(close(f.service_level, 0.6724, 1e-3), "{f:?}");
        assert!(close(f.occupancy, 0.8, 1e-12));
    }

    #[test]
    fn erlang_b_known_value_and_stability_for_thousands() {
        // 5 erlangs on 10 trunks: blocking 1.84%.
        assert!(close(erlang_b(10, 5.0).unwrap(), 0.018385, 1e-6));
        for &(n, a) in &[(5000u32, 4900.0), (20000, 19990.0), (100_000, 99_000.0)] {
            let c = erlang_c(n, a).unwrap();
            assert!(c.is_finite() && (0.0..=1.0).contains(&c), "{n} {a} {c}");
        }
    }

    #[test]
    fn erlang_a_golden() {
        // 1000 calls/h, AHT 180 s, patience 120 s, 50 agents.
        let f = erlang_a(50, 1000.0, 180.0, 120.0, 20.0).unwrap();
        assert!(close(f.p_wait, 0.4704, 5e-4), "{f:?}");
        assert!(close(f.p_abandon, 0.0620, 5e-4), "{f:?}");
        assert!(close(f.mean_wait, 0.0620 * 120.0, 0.1), "{f:?}");
        assert!(f.service_level > 0.5 && f.service_level < 1.0, "{f:?}");
    }

    #[test]
    fn erlang_a_service_level_agrees_with_erlang_c_when_nobody_abandons() {
        // Very patient callers: Erlang A tends to Erlang C.
        let a = erlang_a(10, 8.0 * 3600.0 / 180.0, 180.0, 1e9, 20.0).unwrap();
        let c = erlang_c_forecast(10, 8.0, 180.0, 20.0).unwrap();
        assert!(close(a.p_wait, c.p_wait, 1e-4), "{a:?} {c:?}");
        assert!(close(a.service_level, c.service_level, 1e-3), "{a:?} {c:?}");
        assert!(close(a.mean_wait, c.asa, 0.05), "{a:?} {c:?}");
    }

    #[test]
    fn erlang_a_is_stable_past_overload() {
        let f = erlang_a(10, 1000.0, 180.0, 60.0, 20.0).unwrap();
        assert!(f.p_abandon > 0.5 && f.p_abandon < 1.0, "{f:?}");
        assert!(f.occupancy > 0.99);
    }

    #[test]
    fn staffing_inversions() {
        // 487 erlangs, 80% in 20 s with AHT 180 s.
        let n = erlang_c_staffing(
            487.0,
            180.0,
            StaffingTarget::ServiceLevel {
                fraction: 0.8,
                seconds: 20.0,
            },
        )
        .unwrap();
        let at = erlang_c_forecast(n, 487.0, 180.0, 20.0).unwrap();
        let below = erlang_c_forecast(n - 1, 487.0, 180.0, 20.0).unwrap();
        assert!(at.service_level >= 0.8 && below.service_level < 0.8, "{n}");
        let n = erlang_c_staffing(8.0, 180.0, StaffingTarget::Asa { seconds: 10.0 }).unwrap();
        assert!(erlang_c_forecast(n, 8.0, 180.0, 0.0).unwrap().asa <= 10.0);
        assert!(erlang_c_forecast(n - 1, 8.0, 180.0, 0.0).unwrap().asa > 10.0);
        let n = erlang_a_staffing(
            1000.0,
            180.0,
            120.0,
            StaffingTarget::AbandonRate { fraction: 0.03 },
        )
        .unwrap();
        assert!(erlang_a(n, 1000.0, 180.0, 120.0, 0.0).unwrap().p_abandon <= 0.03);
        assert!(
            erlang_a(n - 1, 1000.0, 180.0, 120.0, 0.0)
                .unwrap()
                .p_abandon
                > 0.03
        );
    }

    #[test]
    fn out_of_domain_is_an_error_never_nan() {
        assert!(matches!(
            erlang_b(3, f64::NAN),
            Err(MathError::OutOfDomain {
                name: "traffic",
                ..
            })
        ));
        assert!(matches!(
            erlang_c(0, 1.0),
            Err(MathError::OutOfDomain { name: "agents", .. })
        ));
        assert!(matches!(
            erlang_c_forecast(5, 6.0, 180.0, 20.0),
            Err(MathError::Unstable { .. })
        ));
        assert!(matches!(
            erlang_a(5, -1.0, 180.0, 60.0, 20.0),
            Err(MathError::OutOfDomain { .. })
        ));
        assert!(matches!(
            erlang_a(5, 1.0, 0.0, 60.0, 20.0),
            Err(MathError::OutOfDomain { name: "aht", .. })
        ));
        assert!(matches!(
            erlang_c_staffing(
                5.0,
                180.0,
                StaffingTarget::ServiceLevel {
                    fraction: 1.5,
                    seconds: 20.0
                }
            ),
            Err(MathError::OutOfDomain { .. })
        ));
        assert_eq!(erlang_c(3, 5.0).unwrap(), 1.0);
    }
}
