//! Reference pacers the benches measure ccorch's pacer against (not used to dial):
//! VICIdial's adaptive level, and a steady-state Erlang C pacer with abandon feedback,
//! the textbook predictive dialer.

use std::collections::{HashMap, HashSet};

use ccorch_acd::erlang::erlang_c_forecast;

use crate::abandon::{AbandonLedger, Millis};
use crate::pacer::{AgentId, CallId, Event, Pacer};

/// VICIdial's adaptive pacing, re-implemented from its published behaviour as a
/// reference: every 15 s the dial level moves by (mean ready operators − mean waiting
/// calls) / operators, clamped to [1, 3]; every 2.5 s it places ready × level − in flight;
/// once the day's drop rate passes 3% after 50 calls, the level returns to 1.
#[derive(Clone, Debug)]
pub struct VicidialAdaptive {
    level: f64,
    agents: HashMap<AgentId, bool>,
    ready: u32,
    waiting: u32,
    in_flight: u32,
    samples: u32,
    ready_sum: f64,
    waiting_sum: f64,
    last_adjust: Millis,
    last_place: Millis,
    day: u64,
    day_calls: u32,
    day_drops: u32,
    holding: HashSet<CallId>,
    ledger: AbandonLedger,
}

impl VicidialAdaptive {
    pub fn new(amd_false_positive_share: f64) -> VicidialAdaptive {
        VicidialAdaptive {
            level: 1.0,
            agents: HashMap::new(),
            ready: 0,
            waiting: 0,
            in_flight: 0,
            samples: 0,
            ready_sum: 0.0,
            waiting_sum: 0.0,
            last_adjust: 0,
            last_place: 0,
            day: u64::MAX,
            day_calls: 0,
            day_drops: 0,
            holding: HashSet::new(),
            ledger: AbandonLedger::new(amd_false_positive_share),
        }
    }

    fn set_ready(&mut self, agent: AgentId, ready: bool) {
        if let Some(old) = self.agents.insert(agent, ready) {
            if old {
                self.ready -= 1;
            }
        }
        if ready {
            self.ready += 1;
        }
    }
}

impl Pacer for VicidialAdaptive {
    fn handle(&mut self, now: Millis, event: Event) {
        let day = now / 86_400_000;
        if day != self.day {
            self.day = day;
            self.day_calls = 0;
            self.day_drops = 0;
        }
        match event {
            Event::AgentJoined(a) | Event::AgentReady(a) => self.set_ready(a, true),
            Event::AgentLeft(a) => {
                if self.agents.remove(&a) == Some(true) {
                    self.ready -= 1;
                }
            }
            Event::CallConnected { call, agent } => {
                if self.holding.remove(&call) {
                    self.waiting -= 1;
                }
                self.set_ready(agent, false);
            }
            // VICIdial's published behaviour knows neither
            Event::TalkEnded(_)
            | Event::PreviewRequest(_)
            | Event::AgentLeaving(_)
            | Event::NotLiveAfterAll { .. } => {}
            Event::CallPlaced(_) => {
                self.in_flight += 1;
                self.day_calls += 1;
            }
            Event::CallAnswered { call, human } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if human {
                    self.ledger.live_answer(now);
                    self.holding.insert(call);
                    self.waiting += 1;
                } else {
                    self.ledger.machine(now);
                }
            }
            Event::CallUnanswered(_) => self.in_flight = self.in_flight.saturating_sub(1),
            Event::CallAbandoned(call) => {
                if self.holding.remove(&call) {
                    self.waiting -= 1;
                }
                self.ledger.abandoned(now);
                self.day_drops += 1;
            }
        }
    }

    fn dials(&mut self, now: Millis) -> u32 {
        self.samples += 1;
        self.ready_sum += f64::from(self.ready);
        self.waiting_sum += f64::from(self.waiting);
        if now >= self.last_adjust + 15_000 {
            self.last_adjust = now;
            let agents = self.agents.len().max(1) as f64;
            let n = f64::from(self.samples.max(1));
            self.level += (self.ready_sum / n - self.waiting_sum / n) / agents;
            self.level = self.level.clamp(1.0, 3.0);
            self.samples = 0;
            self.ready_sum = 0.0;
            self.waiting_sum = 0.0;
            if self.day_calls >= 50 && f64::from(self.day_drops) > 0.03 * f64::from(self.day_calls)
            {
                self.level = 1.0;
            }
        }
        if now < self.last_place + 2_500 {
            return 0;
        }
        self.last_place = now;
        ((f64::from(self.ready) * self.level).floor() as u32).saturating_sub(self.in_flight)
    }

    fn ledger(&self) -> &AbandonLedger {
        &self.ledger
    }
}

/// Share of live answers that wait longer than `window` seconds at `servers` operators
/// with `load` Erlangs and a mean handle time of `handle` seconds (M/M/c, Erlang C).
pub fn erlang_c_wait_over(servers: u32, load: f64, handle: f64, window: f64) -> f64 {
    erlang_c_forecast(servers, load, handle, window).map_or(1.0, |f| 1.0 - f.service_level)
}

/// The textbook predictive dialer: the operators are an M/M/c queue fed by live answers;
/// it finds the largest load whose share of answers waiting past the connect window
/// (Erlang C) is the target, turns it into a dial rate with the live-answer rate, and
/// keeps that rate × the mean time a dial takes to resolve in flight (Little's law). The
/// target follows the measured abandons (each live answer raises it a little, each
/// abandon lowers it), and when the legal windows have less left than the calls in flight
/// may cost, it dials one call per free operator. Estimates (live-answer rate, handle
/// time, time to resolve) are moving averages of the campaign's own outcomes; it dials
/// progressive until it has 30 of them.
#[derive(Clone, Debug)]
pub struct ErlangCPacer {
    /// Abandons over live answers it steers to (e.g. 0.025).
    aim: f64,
    /// Seconds a live answer may wait for an operator.
    connect_window: f64,
    /// The Erlang C target, moved by feedback.
    target: f64,
    agents: HashMap<AgentId, ErlangAgent>,
    leaving: HashSet<AgentId>,
    in_flight: HashMap<CallId, Millis>,
    waiting: HashSet<CallId>,
    live_share: Ewma,
    resolve_seconds: Ewma,
    handle_seconds: Ewma,
    ledger: AbandonLedger,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ErlangAgent {
    Idle,
    Busy { since: Millis },
}

/// Exponentially weighted mean; `n` counts samples (the first sets the mean).
#[derive(Clone, Copy, Debug)]
struct Ewma {
    mean: f64,
    n: u64,
    alpha: f64,
}

impl Ewma {
    fn new(alpha: f64) -> Ewma {
        Ewma {
            mean: 0.0,
            n: 0,
            alpha,
        }
    }

    fn add(&mut self, x: f64) {
        self.n += 1;
        let a = self.alpha.max(1.0 / self.n as f64);
        self.mean += a * (x - self.mean);
    }
}

/// Samples each estimate needs before the Erlang C rule replaces one call per free
/// operator.
const ERLANG_WARM_UP: u64 = 30;

impl ErlangCPacer {
    pub fn new(aim: f64, connect_window: f64, amd_false_positive_share: f64) -> ErlangCPacer {
        ErlangCPacer {
            aim,
            connect_window,
            target: aim,
            agents: HashMap::new(),
            leaving: HashSet::new(),
            in_flight: HashMap::new(),
            waiting: HashSet::new(),
            live_share: Ewma::new(0.005),
            resolve_seconds: Ewma::new(0.005),
            handle_seconds: Ewma::new(0.01),
            ledger: AbandonLedger::new(amd_false_positive_share),
        }
    }

    fn idle(&self) -> u32 {
        self.agents
            .iter()
            .filter(|(a, s)| **s == ErlangAgent::Idle && !self.leaving.contains(a))
            .count() as u32
    }

    fn resolved(&mut self, now: Millis, call: CallId, live: bool) {
        if let Some(placed) = self.in_flight.remove(&call) {
            self.resolve_seconds
                .add(now.saturating_sub(placed) as f64 / 1000.0);
            self.live_share.add(if live { 1.0 } else { 0.0 });
        }
    }

    /// The largest load (Erlangs) whose answers wait past the window at most `target`.
    fn load_for(&self, servers: u32, handle: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, f64::from(servers));
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if erlang_c_wait_over(servers, mid, handle, self.connect_window) <= self.target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl Pacer for ErlangCPacer {
    fn handle(&mut self, now: Millis, event: Event) {
        match event {
            Event::AgentJoined(a) => {
                self.leaving.remove(&a);
                self.agents.insert(a, ErlangAgent::Idle);
            }
            Event::AgentLeft(a) => {
                self.agents.remove(&a);
                self.leaving.remove(&a);
            }
            Event::AgentLeaving(a) => match self.agents.get(&a) {
                Some(ErlangAgent::Idle) => {
                    self.agents.remove(&a);
                }
                Some(_) => {
                    self.leaving.insert(a);
                }
                None => {}
            },
            Event::AgentReady(a) => {
                if let Some(ErlangAgent::Busy { since }) = self.agents.get(&a).copied() {
                    self.handle_seconds
                        .add(now.saturating_sub(since) as f64 / 1000.0);
                    if self.leaving.remove(&a) {
                        self.agents.remove(&a);
                    } else {
                        self.agents.insert(a, ErlangAgent::Idle);
                    }
                }
            }
            Event::CallConnected { call, agent } => {
                self.waiting.remove(&call);
                if let Some(s) = self.agents.get_mut(&agent) {
                    *s = ErlangAgent::Busy { since: now };
                }
            }
            Event::TalkEnded(_) | Event::PreviewRequest(_) => {}
            Event::NotLiveAfterAll { answered_at } => {
                self.ledger.not_live_after_all(answered_at, now);
            }
            Event::CallPlaced(call) => {
                self.in_flight.insert(call, now);
            }
            Event::CallAnswered { call, human } => {
                self.resolved(now, call, human);
                if human {
                    self.ledger.live_answer(now);
                    self.waiting.insert(call);
                    self.target = (self.target * (1.0 + 0.02 * self.aim)).min(0.5);
                } else {
                    self.ledger.machine(now);
                }
            }
            Event::CallUnanswered(call) => self.resolved(now, call, false),
            Event::CallAbandoned(call) => {
                self.waiting.remove(&call);
                self.ledger.abandoned(now);
                self.target = (self.target * (1.0 - 0.02)).max(1e-4);
            }
        }
    }

    fn dials(&mut self, now: Millis) -> u32 {
        let in_flight = (self.in_flight.len() + self.waiting.len()) as u32;
        let progressive = self.idle().saturating_sub(in_flight);
        let warm = self.live_share.n >= ERLANG_WARM_UP
            && self.handle_seconds.n >= ERLANG_WARM_UP
            && self.live_share.mean > 0.0;
        // the legal windows' budget against what the calls in flight may cost
        let at_risk = self.in_flight.len() as f64 * self.live_share.mean * self.target;
        if !warm || self.ledger.budget(now, 0.03) <= at_risk {
            return progressive;
        }
        let servers = self
            .agents
            .keys()
            .filter(|a| !self.leaving.contains(a))
            .count() as u32;
        if servers == 0 {
            return 0;
        }
        let handle = self.handle_seconds.mean.max(1.0);
        let load = self.load_for(servers, handle);
        let dial_rate = load / handle / self.live_share.mean;
        let keep = (dial_rate * self.resolve_seconds.mean).ceil() as u32;
        keep.saturating_sub(self.in_flight.len() as u32)
            .max(progressive)
    }

    fn ledger(&self) -> &AbandonLedger {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccorch_acd::erlang::erlang_c;

    #[test]
    fn vicidial_level_rises_with_ready_operators_and_places_every_2_5_s() {
        let mut v = VicidialAdaptive::new(0.0);
        for a in 0..10 {
            v.handle(0, Event::AgentJoined(a));
        }
        assert_eq!(v.dials(2_500), 10, "level 1.0 at first");
        assert_eq!(v.dials(3_000), 0, "placing loop every 2.5 s");
        for t in (3_250..=15_000).step_by(250) {
            v.dials(t);
        }
        // All ten stayed ready: level 1 + (10 − 0) / 10 = 2.
        assert!((v.level - 2.0).abs() < 1e-9, "{}", v.level);
    }

    #[test]
    fn erlang_c_wait_past_the_window() {
        // 10 operators, 8 Erlangs: 40.9% of calls wait (standard tables)
        let waits = erlang_c(10, 8.0).unwrap();
        assert!((waits - 0.409).abs() < 0.001, "{waits}");
        assert_eq!(
            erlang_c_wait_over(5, 5.0, 120.0, 2.0),
            1.0,
            "unstable: all wait"
        );
        // the wait past the window shrinks with the window
        let (a, b) = (
            erlang_c_wait_over(10, 8.0, 120.0, 2.0),
            erlang_c_wait_over(10, 8.0, 120.0, 20.0),
        );
        assert!(b < a && a < waits, "{a} {b}");
    }

    #[test]
    fn erlang_c_pacer_dials_progressive_until_it_knows_then_overdials() {
        let mut p = ErlangCPacer::new(0.025, 2.0, 0.0);
        for a in 0..50 {
            p.handle(0, Event::AgentJoined(a));
        }
        assert_eq!(p.dials(0), 50, "one per free operator at first");
        // 200 calls: a quarter live, each resolved after 10 s; the live ones talk 100 s
        let mut t = 0;
        for c in 0..200u64 {
            p.handle(t, Event::CallPlaced(c));
            t += 10_000;
            p.handle(
                t,
                Event::CallAnswered {
                    call: c,
                    human: c % 4 == 0,
                },
            );
            if c % 4 == 0 {
                let agent = (c / 4) % 50;
                p.handle(t, Event::CallConnected { call: c, agent });
                p.handle(t + 100_000, Event::AgentReady(agent));
            }
        }
        let mut now = t + 200_000;
        // 48 of the 50 talk: at 2.6% past 2 s, Erlang C allows ≈ 37.5 Erlangs of 100 s
        // (0.375 live answers a second; the live share is now 90 of 240, so ≈ 1 dial a
        // second, 10 s each): ≈ 10 in flight, more than the 2 free operators
        for a in 0..48u64 {
            p.handle(now, Event::CallPlaced(10_000 + a));
            p.handle(
                now + 10_000,
                Event::CallAnswered {
                    call: 10_000 + a,
                    human: a < 40,
                },
            );
            p.handle(
                now + 10_000,
                Event::CallConnected {
                    call: 10_000 + a,
                    agent: a,
                },
            );
        }
        now += 10_000;
        let n = p.dials(now);
        assert!((8..=12).contains(&n), "{n}");
        // a pending logout takes the operator out of the servers
        for a in 0..25 {
            p.handle(now, Event::AgentLeaving(a));
        }
        assert!(p.dials(now) < n);
    }
}
