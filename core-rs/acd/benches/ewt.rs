//! How right is the estimated wait a caller hears? The real `Acd` in virtual time, one
//! queue, against the estimators the usual systems announce, on the same callers:
//! - ccorch: `Acd::estimated_wait` at the moment the caller joins the queue (Erlang A with
//!   learned handle time and patience, see `ccorch_acd::ewt`); its prior handle time is
//!   deliberately wrong (120 s where calls take 180 s on average), as a cold node's might be;
//! - Asterisk app_queue's holdtime: after each answered call, `h = (3h + wait) / 4`;
//! - VICIdial: the mean of the last five answered waits;
//! - an oracle told the true handle time and patience (the same position-aware Erlang A):
//!   the practical floor for any estimator that does not see the future.
//!
//! Scenarios: 5, 20 and 100 operators; load 0.85 and 0.95; handle times exponential or
//! lognormal (mean 180 s, σ 0.8); callers patient, or abandoning after an exponential
//! patience of mean 180 s; with or without a one-hour 1.5× surge of arrivals. Only callers
//! who had to wait and were answered count (an abandoner's full wait is never known).
//!
//!     cargo bench -p ccorch-acd --bench ewt            # 30,000 callers a scenario
//!     EWT_CALLERS=100000 cargo bench -p ccorch-acd --bench ewt
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use ccorch_acd::engine::*;
use ccorch_acd::ewt::erlang_a_wait;
use ccorch_acd::skills::{parse, SkillTable};

const MEAN_HANDLE_S: f64 = 180.0;
const PRIOR_HANDLE_S: f64 = 120.0;
const MEAN_PATIENCE_S: f64 = 180.0;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.next().ln()
    }
    fn lognormal(&mut self, mean: f64, sigma: f64) -> f64 {
        let z = (-2.0 * self.next().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.next()).cos();
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * z).exp()
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    agents: u32,
    load: f64,
    lognormal: bool,
    abandon: bool,
    surge: bool,
}

#[derive(Default)]
struct Told {
    ccorch: Option<f64>,
    asterisk: f64,
    vicidial: f64,
    oracle: f64,
    entered: f64,
}

#[derive(Default)]
struct Errors {
    abs: Vec<f64>,
    signed: Vec<f64>,
    close: usize,
    zero_then_long: usize,
    unknown: usize,
}

impl Errors {
    fn add(&mut self, told: Option<f64>, actual: f64) {
        let Some(t) = told else {
            self.unknown += 1;
            return;
        };
        let e = t - actual;
        self.abs.push(e.abs());
        self.signed.push(e);
        if e.abs() <= 30.0 || e.abs() <= 0.25 * actual {
            self.close += 1;
        }
        if t < 1.0 && actual > 60.0 {
            self.zero_then_long += 1; // "no wait" said, then more than a minute
        }
    }
    fn mean(&self) -> f64 {
        self.abs.iter().sum::<f64>() / self.abs.len().max(1) as f64
    }
    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.abs.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    }
    fn bias(&self) -> f64 {
        self.signed.iter().sum::<f64>() / self.signed.len().max(1) as f64
    }
}

#[derive(PartialEq)]
struct At(f64);
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for At {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

enum Ev {
    Arrive,
    HandleEnd(u64),
    GiveUp(u64),
}

fn run(sc: Scenario, callers: usize, seed: u64) -> [Errors; 4] {
    let mut rng = Rng(seed);
    let mut skills = SkillTable::default();
    let mut acd = Acd::new(seed);
    let mut cfg = QueueConfig::new("q", parse("s", &mut skills).unwrap());
    cfg.wrap_up = 0;
    cfg.offer_timeout = 3_600_000;
    cfg.expected_handle = (PRIOR_HANDLE_S * 1000.0) as Millis;
    let q = acd.add_queue(cfg).unwrap();
    let sid = skills.intern("s");
    for a in 0..sc.agents {
        acd.login(0, AgentId(u64::from(a)), &[(sid, 5)], &[q])
            .unwrap();
        acd.set_ready(0, AgentId(u64::from(a))).unwrap();
    }
    let rate = sc.load * f64::from(sc.agents) / MEAN_HANDLE_S; // arrivals per second
    let horizon = callers as f64 / rate;
    let (surge_from, surge_to) = (horizon * 0.4, horizon * 0.4 + 3600.0);
    let theta = if sc.abandon {
        1.0 / MEAN_PATIENCE_S
    } else {
        0.0
    };
    let mut events: BinaryHeap<(Reverse<At>, u64, u8)> = BinaryHeap::new();
    let mut kinds: HashMap<u64, Ev> = HashMap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<(Reverse<At>, u64, u8)>,
                    kinds: &mut HashMap<u64, Ev>,
                    t: f64,
                    ev: Ev| {
        seq += 1;
        kinds.insert(seq, ev);
        events.push((Reverse(At(t)), seq, 0));
    };
    push(&mut events, &mut kinds, rng.exp(1.0 / rate), Ev::Arrive);
    let mut told: HashMap<u64, Told> = HashMap::new();
    let (mut asterisk, mut last5) = (0.0f64, VecDeque::<f64>::new());
    let mut errs: [Errors; 4] = Default::default();
    let mut next_call = 0u64;
    let mut arrived = 0usize;
    let mut waiting: HashMap<u64, bool> = HashMap::new();
    while let Some((Reverse(At(t)), id, _)) = events.pop() {
        let now = (t * 1000.0) as Millis;
        acd.handle_timeout(now);
        match kinds.remove(&id).unwrap() {
            Ev::Arrive => {
                arrived += 1;
                if arrived < callers {
                    let r = if sc.surge && (surge_from..surge_to).contains(&t) {
                        rate * 1.5
                    } else {
                        rate
                    };
                    push(&mut events, &mut kinds, t + rng.exp(1.0 / r), Ev::Arrive);
                }
                next_call += 1;
                let call = CallId(next_call);
                acd.enqueue(now, call, q, 0, &[]).unwrap();
                let pos = acd.position(call);
                if let Some(pos) = pos {
                    // queued (an immediate offer has no position): the announcement
                    let vic = if last5.is_empty() {
                        0.0
                    } else {
                        last5.iter().sum::<f64>() / last5.len() as f64
                    };
                    told.insert(
                        next_call,
                        Told {
                            ccorch: acd.estimated_wait(now, call),
                            asterisk,
                            vicidial: vic,
                            oracle: erlang_a_wait(pos - 1, sc.agents, MEAN_HANDLE_S, theta)
                                .unwrap(),
                            entered: t,
                        },
                    );
                    waiting.insert(next_call, true);
                    if sc.abandon {
                        push(
                            &mut events,
                            &mut kinds,
                            t + rng.exp(MEAN_PATIENCE_S),
                            Ev::GiveUp(next_call),
                        );
                    }
                }
            }
            Ev::HandleEnd(call) => {
                acd.end_call(now, CallId(call)).unwrap();
            }
            Ev::GiveUp(call) => {
                if waiting.remove(&call).is_some() {
                    acd.hangup(now, CallId(call)).unwrap();
                    told.remove(&call);
                }
            }
        }
        // carry out the engine's offers: each is answered at once
        while let Some(a) = acd.poll_action() {
            if let Action::Offer { call, .. } = a {
                acd.answer(now, call).unwrap();
                let handle = if sc.lognormal {
                    rng.lognormal(MEAN_HANDLE_S, 0.8)
                } else {
                    rng.exp(MEAN_HANDLE_S)
                };
                push(&mut events, &mut kinds, t + handle, Ev::HandleEnd(call.0));
                waiting.remove(&call.0);
                let wait = told.get(&call.0).map_or(0.0, |x| t - x.entered);
                asterisk = (3.0 * asterisk + wait) / 4.0;
                if last5.len() == 5 {
                    last5.pop_front();
                }
                last5.push_back(wait);
                if let Some(x) = told.remove(&call.0) {
                    errs[0].add(x.ccorch, wait);
                    errs[1].add(Some(x.asterisk), wait);
                    errs[2].add(Some(x.vicidial), wait);
                    errs[3].add(Some(x.oracle), wait);
                }
            }
        }
    }
    errs
}

fn main() {
    let callers: usize = std::env::var("EWT_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    println!("| operators | load | handle | impatient | surge | callers told | ccorch MAE | Asterisk MAE | last-5 MAE | oracle MAE | ccorch / Asterisk | ccorch / oracle | ccorch median / p90 | ccorch bias | within ±30 s or ±25% (ccorch, Asterisk) | told 0, waited >60 s (ccorch, Asterisk) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut seed = 1;
    let mut worst_ast: f64 = 0.0;
    let mut worst_oracle: f64 = 0.0;
    for agents in [5, 20, 100] {
        for load in [0.85, 0.95] {
            for lognormal in [false, true] {
                for abandon in [false, true] {
                    for surge in [false, true] {
                        seed += 1;
                        let sc = Scenario {
                            agents,
                            load,
                            lognormal,
                            abandon,
                            surge,
                        };
                        let [c, a, v, o] = run(sc, callers, seed);
                        let n = c.abs.len();
                        let ra = c.mean() / a.mean();
                        let ro = c.mean() / o.mean();
                        worst_ast = worst_ast.max(ra);
                        worst_oracle = worst_oracle.max(ro);
                        println!(
                            "| {agents} | {load} | {} | {} | {} | {n} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {ra:.2} | {ro:.2} | {:.0} / {:.0} s | {:+.1} s | {:.0}%, {:.0}% | {}, {} |",
                            if lognormal { "lognormal" } else { "exp" },
                            if abandon { "yes" } else { "no" },
                            if surge { "yes" } else { "no" },
                            c.mean(), a.mean(), v.mean(), o.mean(),
                            c.quantile(0.5), c.quantile(0.9), c.bias(),
                            100.0 * c.close as f64 / n.max(1) as f64,
                            100.0 * a.close as f64 / a.abs.len().max(1) as f64,
                            c.zero_then_long, a.zero_then_long,
                        );
                        assert_eq!(c.unknown, 0, "nobody logs out in these scenarios");
                    }
                }
            }
        }
    }
    println!("\nworst ccorch/Asterisk: {worst_ast:.2}; worst ccorch/oracle: {worst_oracle:.2}");
}
