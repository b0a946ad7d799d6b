//! A discrete-event simulator of an outbound campaign, seeded and reproducible, for
//! comparing pacers on the same days.
//!
//! Each campaign day lasts `day_hours` from 09:00; every 250 ms the pacer says how many
//! numbers to dial. A dialled number rings and is answered by a person or a machine, is
//! busy, or rings out (at least 15 s). Answering-machine detection drops what it takes for
//! a machine (some of them people: false positives). A person is bridged to a free
//! operator at once, or waits for one at most the connect window (2 s) and is otherwise
//! dropped: abandoned. Operators talk, wrap up, and take the next call; some step away
//! and come back; the answer rate can drift by steps during the day.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::abandon::{AbandonLedger, Millis};
use crate::dist::{check_duration, check_probability, Dist, ParamError, Rng};
use crate::pacer::{Event, Pacer};

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub agents: u32,
    pub day_hours: f64,
    pub p_live: f64,
    pub p_machine: f64,
    pub p_busy: f64,
    /// Ring time before a person or a machine answers, seconds.
    pub ring: Dist,
    /// Unanswered calls ring this long before giving up (at least 15 s).
    pub no_answer_after: f64,
    pub talk: Dist,
    pub wrap: Dist,
    /// Share of machines that detection recognises.
    pub amd_detects_machine: f64,
    /// Share of people that detection takes for machines (and drops).
    pub amd_false_positive: f64,
    /// A person not bridged within this many seconds is abandoned.
    pub connect_window: f64,
    /// Seconds from an answer to detection's verdict (the greeting heard): the call is
    /// still in flight for the pacer, and nobody can take it yet.
    pub detect_seconds: f64,
    /// Seconds an operator spends on a machine that detection let through (or that was
    /// never checked: progressive and power modes) before hanging up.
    pub machine_talk: f64,
    /// Answer-rate multipliers applied in turn, each for `drift_every` seconds.
    pub drift: Vec<f64>,
    pub drift_every: f64,
    /// (start hour into the day, minutes away, share of operators): operators leave when
    /// their call is done and come back after the break.
    pub breaks: Vec<(f64, f64, f64)>,
}

impl Scenario {
    /// The base case: 50 operators, 8 hours, the given live-answer probability
    /// and mean talk time (log-normal), 10 s wrap-up.
    pub fn standard(p_live: f64, talk_mean: f64) -> Scenario {
        Scenario {
            agents: 50,
            day_hours: 8.0,
            p_live,
            p_machine: 0.15,
            p_busy: 0.05,
            ring: Dist::LogNormal { mean: 9.0, sd: 5.0 },
            no_answer_after: 25.0,
            talk: Dist::LogNormal {
                mean: talk_mean,
                sd: talk_mean * 0.8,
            },
            wrap: Dist::Constant(10.0),
            amd_detects_machine: 0.85,
            amd_false_positive: 0.01,
            connect_window: 2.0,
            detect_seconds: 0.0,
            machine_talk: 5.0,
            drift: Vec::new(),
            drift_every: 3600.0,
            breaks: vec![(2.0, 15.0, 0.2), (4.0, 30.0, 0.3), (6.0, 15.0, 0.2)],
        }
    }

    /// Share of detection's machine verdicts that are people: the campaign's reasoned
    /// false-positive estimate (Ofcom), as measured on its own detector.
    pub fn amd_false_positive_share(&self) -> f64 {
        let fp = self.amd_false_positive * self.p_live;
        fp / (fp + self.amd_detects_machine * self.p_machine).max(1e-9)
    }

    /// The same with the answer rate stepping ±50% every hour.
    pub fn with_drift(mut self) -> Scenario {
        self.drift = vec![1.0, 1.5, 1.0, 0.5];
        self
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        let p = |n: &str, v: f64| check_probability(n, v).map(|_| ());
        p("p_live", self.p_live)?;
        p("p_machine", self.p_machine)?;
        p("p_busy", self.p_busy)?;
        p(
            "p_live + p_machine + p_busy",
            self.p_live + self.p_machine + self.p_busy,
        )?;
        p("amd_detects_machine", self.amd_detects_machine)?;
        p("amd_false_positive", self.amd_false_positive)?;
        self.ring.validate("ring")?;
        self.talk.validate("talk")?;
        self.wrap.validate("wrap")?;
        check_duration("connect_window", self.connect_window)?;
        check_duration("detect_seconds", self.detect_seconds)?;
        check_duration("machine_talk", self.machine_talk)?;
        check_duration("day_hours", self.day_hours)?;
        if !(self.no_answer_after.is_finite() && self.no_answer_after >= 15.0) {
            return Err(ParamError {
                name: "no_answer_after".into(),
                value: self.no_answer_after,
                expected: "at least 15 seconds (minimum ring time)",
            });
        }
        for &f in &self.drift {
            check_duration("drift factor", f)?;
        }
        Ok(())
    }
}

/// One campaign day's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Day {
    pub dialed: u64,
    /// Answered by a person, detection agreeing.
    pub live: u64,
    pub abandoned: u64,
    pub machine_dropped: u64,
    /// People dropped as machines (known to the simulator only).
    pub amd_false_positives: u64,
    pub connected: u64,
    pub talk_seconds: f64,
    pub agent_seconds: f64,
    /// Rates at the end of the day over the 24 hours (Ofcom, with the FP estimate) and the
    /// 30 days (TSR) ending then.
    pub rate_24h: f64,
    pub rate_30d: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub days: Vec<Day>,
    /// The highest Ofcom rate (the FP estimate included) over exactly 24 hours, at every
    /// instant the campaign ran once it had run 24 hours: what an auditor would find.
    pub max_rolling_24h: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Count {
    Live,
    Abandoned,
    Machine,
}

/// Exact rolling 24-hour windows: the rate is evaluated after every count and every
/// count leaving the window, i.e. at every instant it changes.
struct Rolling {
    counts: VecDeque<(Millis, Count)>,
    live: u64,
    abandoned: u64,
    machine: u64,
    share: f64,
    max: f64,
}

const DAY_MS: Millis = 86_400_000;

impl Rolling {
    fn add(&mut self, now: Millis, c: Count) {
        while let Some(&(t, old)) = self.counts.front() {
            if t + DAY_MS > now {
                break;
            }
            self.counts.pop_front();
            *self.slot(old) -= 1;
            self.check(t + DAY_MS);
        }
        self.counts.push_back((now, c));
        *self.slot(c) += 1;
        self.check(now);
    }

    fn slot(&mut self, c: Count) -> &mut u64 {
        match c {
            Count::Live => &mut self.live,
            Count::Abandoned => &mut self.abandoned,
            Count::Machine => &mut self.machine,
        }
    }

    fn check(&mut self, at: Millis) {
        // the first day's windows are shorter than 24 hours of calls: not yet comparable
        if at < DAY_MS + 9 * 3_600_000 {
            return;
        }
        let fp = self.machine as f64 * self.share;
        let den = self.live as f64 + fp;
        if den > 0.0 {
            self.max = self.max.max((self.abandoned as f64 + fp) / den);
        }
    }
}

impl Report {
    fn sum<F: Fn(&Day) -> f64>(&self, f: F) -> f64 {
        self.days.iter().map(f).sum()
    }

    /// Share of operators' logged-in time spent talking.
    pub fn occupancy(&self) -> f64 {
        self.sum(|d| d.talk_seconds) / self.sum(|d| d.agent_seconds).max(1.0)
    }

    /// Abandoned over live answers, all days (the TSR way, without FP).
    pub fn abandon_rate(&self) -> f64 {
        self.sum(|d| d.abandoned as f64) / self.sum(|d| d.live as f64).max(1.0)
    }

    /// (abandoned + true AMD false positives) / (live + true AMD false positives).
    pub fn abandon_rate_with_false_positives(&self) -> f64 {
        let fp = self.sum(|d| d.amd_false_positives as f64);
        (self.sum(|d| d.abandoned as f64) + fp) / (self.sum(|d| d.live as f64) + fp).max(1.0)
    }

    pub fn calls_per_agent_hour(&self) -> f64 {
        self.sum(|d| d.connected as f64) / (self.sum(|d| d.agent_seconds) / 3600.0).max(1e-9)
    }

    /// Day-end windows above `limit`: (24-hour, 30-day).
    pub fn windows_over(&self, limit: f64) -> (usize, usize) {
        (
            self.days.iter().filter(|d| d.rate_24h > limit).count(),
            self.days.iter().filter(|d| d.rate_30d > limit).count(),
        )
    }

    pub fn max_rates(&self) -> (f64, f64) {
        self.days.iter().fold((0.0, 0.0), |(a, b), d| {
            (a.max(d.rate_24h), b.max(d.rate_30d))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick,
    Resolve(u64),
    HoldExpire(u64),
    TalkEnd(u64),
    WrapEnd(u64),
    BreakStart(usize),
    BreakEnd(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Person,
    Machine,
    Unanswered,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Idle,
    Talking,
    Wrap,
    Away,
}

struct World {
    rng: Rng,
    queue: BinaryHeap<Reverse<(Millis, u64, Ev)>>,
    seq: u64,
    ops: Vec<Op>,
    leaving: Vec<bool>,
    idle: VecDeque<u64>,
    holding: VecDeque<u64>,
    pending: HashMap<u64, Outcome>,
    next_call: u64,
    day: Day,
    ledger: AbandonLedger,
    rolling: Rolling,
    present_since: Vec<Option<Millis>>,
}

const SECOND: f64 = 1000.0;

impl World {
    fn at(&mut self, t: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn ms(seconds: f64) -> Millis {
        (seconds * SECOND).round().max(0.0) as Millis
    }

    fn join(&mut self, now: Millis, a: u64, pacer: &mut dyn Pacer) {
        self.ops[a as usize] = Op::Idle;
        self.present_since[a as usize] = Some(now);
        self.idle.push_back(a);
        pacer.handle(now, Event::AgentJoined(a));
    }

    fn leave(&mut self, now: Millis, a: u64, pacer: &mut dyn Pacer) {
        self.ops[a as usize] = Op::Away;
        self.leaving[a as usize] = false;
        self.idle.retain(|&x| x != a);
        if let Some(since) = self.present_since[a as usize].take() {
            self.day.agent_seconds += (now - since) as f64 / SECOND;
        }
        pacer.handle(now, Event::AgentLeft(a));
    }

    fn connect(&mut self, now: Millis, call: u64, a: u64, talk: f64, pacer: &mut dyn Pacer) {
        self.ops[a as usize] = Op::Talking;
        self.day.connected += 1;
        self.day.talk_seconds += talk;
        pacer.handle(now, Event::CallConnected { call, agent: a });
        self.at(now + Self::ms(talk), Ev::TalkEnd(a));
    }
}

/// Run `days` campaign days of `scenario` with `pacer`, from `seed`.
pub fn simulate(
    scenario: &Scenario,
    pacer: &mut dyn Pacer,
    seed: u64,
    days: u32,
) -> Result<Report, ParamError> {
    scenario.validate()?;
    let n = scenario.agents as usize;
    let share = scenario.amd_false_positive * scenario.p_live
        / (scenario.amd_false_positive * scenario.p_live
            + scenario.amd_detects_machine * scenario.p_machine)
            .max(1e-9);
    let mut w = World {
        rng: Rng::new(seed),
        queue: BinaryHeap::new(),
        seq: 0,
        ops: vec![Op::Away; n],
        leaving: vec![false; n],
        idle: VecDeque::new(),
        holding: VecDeque::new(),
        pending: HashMap::new(),
        next_call: 0,
        day: Day::default(),
        ledger: AbandonLedger::new(share),
        rolling: Rolling {
            counts: VecDeque::new(),
            live: 0,
            abandoned: 0,
            machine: 0,
            share,
            max: 0.0,
        },
        present_since: vec![None; n],
    };
    let mut report = Report::default();
    let length = World::ms(scenario.day_hours * 3600.0);
    let mut on_break: Vec<Vec<u64>> = vec![Vec::new(); scenario.breaks.len()];
    for d in 0..u64::from(days) {
        let start = d * 86_400_000 + 9 * 3_600_000;
        let end = start + length;
        w.day = Day::default();
        for a in 0..n as u64 {
            w.join(start, a, pacer);
        }
        w.at(start, Ev::Tick);
        for (i, &(hour, minutes, _)) in scenario.breaks.iter().enumerate() {
            w.at(start + World::ms(hour * 3600.0), Ev::BreakStart(i));
            w.at(
                start + World::ms(hour * 3600.0 + minutes * 60.0),
                Ev::BreakEnd(i),
            );
        }
        while let Some(Reverse((now, _, ev))) = w.queue.pop() {
            match ev {
                Ev::Tick => {
                    if now >= end {
                        continue;
                    }
                    let factor = if scenario.drift.is_empty() {
                        1.0
                    } else {
                        let step = ((now - start) as f64 / SECOND / scenario.drift_every.max(1.0))
                            as usize;
                        scenario.drift[step % scenario.drift.len()]
                    };
                    let k = pacer.dials(now).min(10 * scenario.agents);
                    for _ in 0..k {
                        let call = w.next_call;
                        w.next_call += 1;
                        w.day.dialed += 1;
                        pacer.handle(now, Event::CallPlaced(call));
                        let pl = (scenario.p_live * factor).min(1.0);
                        let pm = (scenario.p_machine * factor).min(1.0 - pl);
                        let u = w.rng.unit();
                        let (outcome, after) = if u < pl {
                            (Outcome::Person, scenario.ring.sample(&mut w.rng))
                        } else if u < pl + pm {
                            (Outcome::Machine, scenario.ring.sample(&mut w.rng))
                        } else if u < pl + pm + scenario.p_busy {
                            (Outcome::Unanswered, 3.0)
                        } else {
                            (Outcome::Unanswered, scenario.no_answer_after)
                        };
                        // an answer is known as a person or a machine after detection
                        let after = if outcome == Outcome::Unanswered {
                            after
                        } else {
                            after + scenario.detect_seconds
                        };
                        w.pending.insert(call, outcome);
                        w.at(now + World::ms(after), Ev::Resolve(call));
                    }
                    w.at(now + 250, Ev::Tick);
                }
                Ev::Resolve(call) => {
                    let Some(outcome) = w.pending.remove(&call) else {
                        continue;
                    };
                    match outcome {
                        Outcome::Unanswered => pacer.handle(now, Event::CallUnanswered(call)),
                        Outcome::Machine if w.rng.chance(scenario.amd_detects_machine) => {
                            w.day.machine_dropped += 1;
                            w.ledger.machine(now);
                            w.rolling.add(now, Count::Machine);
                            pacer.handle(now, Event::CallAnswered { call, human: false });
                        }
                        Outcome::Person if w.rng.chance(scenario.amd_false_positive) => {
                            w.day.machine_dropped += 1;
                            w.day.amd_false_positives += 1;
                            w.ledger.machine(now);
                            w.rolling.add(now, Count::Machine);
                            pacer.handle(now, Event::CallAnswered { call, human: false });
                        }
                        Outcome::Person | Outcome::Machine => {
                            // Taken for a person (a machine that fooled detection, too).
                            w.day.live += 1;
                            w.ledger.live_answer(now);
                            w.rolling.add(now, Count::Live);
                            pacer.handle(now, Event::CallAnswered { call, human: true });
                            let talk = if outcome == Outcome::Person {
                                scenario.talk.sample(&mut w.rng)
                            } else {
                                scenario.machine_talk
                            };
                            if let Some(a) = w.idle.pop_front() {
                                w.connect(now, call, a, talk, pacer);
                            } else {
                                w.holding.push_back(call);
                                w.pending.insert(call, outcome);
                                w.at(
                                    now + World::ms(scenario.connect_window),
                                    Ev::HoldExpire(call),
                                );
                            }
                        }
                    }
                }
                Ev::HoldExpire(call) => {
                    if let Some(pos) = w.holding.iter().position(|&c| c == call) {
                        w.holding.remove(pos);
                        w.pending.remove(&call);
                        w.day.abandoned += 1;
                        w.ledger.abandoned(now);
                        w.rolling.add(now, Count::Abandoned);
                        pacer.handle(now, Event::CallAbandoned(call));
                    }
                }
                Ev::TalkEnd(a) => {
                    w.ops[a as usize] = Op::Wrap;
                    pacer.handle(now, Event::TalkEnded(a));
                    let wrap = scenario.wrap.sample(&mut w.rng);
                    w.at(now + World::ms(wrap), Ev::WrapEnd(a));
                }
                Ev::WrapEnd(a) => {
                    // After the end of the calling window operators stay until the calls
                    // launched inside it are served: only then does the shift end.
                    let drained = w.pending.is_empty() && w.holding.is_empty();
                    if w.leaving[a as usize] || (now >= end && drained) {
                        w.leave(now, a, pacer);
                    } else if let Some(call) = w.holding.pop_front() {
                        let outcome = w.pending.remove(&call);
                        let talk = if outcome == Some(Outcome::Person) {
                            scenario.talk.sample(&mut w.rng)
                        } else {
                            scenario.machine_talk
                        };
                        w.connect(now, call, a, talk, pacer);
                    } else {
                        w.ops[a as usize] = Op::Idle;
                        w.idle.push_back(a);
                        pacer.handle(now, Event::AgentReady(a));
                    }
                }
                Ev::BreakStart(i) => {
                    let count = (scenario.breaks[i].2 * n as f64).round() as usize;
                    let chosen: Vec<u64> = (0..n as u64)
                        .filter(|&a| w.ops[a as usize] != Op::Away)
                        .take(count)
                        .collect();
                    for &a in &chosen {
                        if w.ops[a as usize] == Op::Idle {
                            w.leave(now, a, pacer);
                        } else {
                            w.leaving[a as usize] = true;
                        }
                    }
                    on_break[i] = chosen;
                }
                Ev::BreakEnd(i) => {
                    for a in std::mem::take(&mut on_break[i]) {
                        w.leaving[a as usize] = false;
                        if w.ops[a as usize] == Op::Away && now < end {
                            w.join(now, a, pacer);
                        }
                    }
                }
            }
        }
        // Everyone still present leaves at the end of the day.
        for a in 0..n as u64 {
            if w.ops[a as usize] != Op::Away {
                w.leave(
                    end.max(w.present_since[a as usize].unwrap_or(end)),
                    a,
                    pacer,
                );
            }
        }
        let day_end = end;
        w.day.rate_24h = w.ledger.rate_24_hours(day_end).unwrap_or(0.0);
        w.day.rate_30d = w.ledger.rate_30_days(day_end).unwrap_or(0.0);
        report.days.push(w.day);
    }
    report.max_rolling_24h = w.rolling.max;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacer::{CampaignPacer, Mode, PacerConfig};

    fn run(mode: Mode, seed: u64, days: u32) -> Report {
        let s = Scenario::standard(0.25, 120.0);
        let mut p = CampaignPacer::new(PacerConfig::new(mode)).unwrap();
        simulate(&s, &mut p, seed, days).unwrap()
    }

    #[test]
    fn reproducible_by_seed() {
        assert_eq!(run(Mode::Predictive, 5, 2), run(Mode::Predictive, 5, 2));
        assert_ne!(run(Mode::Predictive, 5, 2), run(Mode::Predictive, 6, 2));
    }

    #[test]
    fn progressive_never_abandons_and_keeps_operators_partly_idle() {
        let r = run(Mode::Progressive, 1, 2);
        assert_eq!(r.days.iter().map(|d| d.abandoned).sum::<u64>(), 0);
        let occ = r.occupancy();
        assert!(occ > 0.2 && occ < 0.75, "{occ}");
    }

    #[test]
    fn invalid_scenarios_are_refused() {
        let mut s = Scenario::standard(0.25, 120.0);
        s.p_live = 1.2;
        let mut p = CampaignPacer::new(PacerConfig::new(Mode::Progressive)).unwrap();
        assert!(simulate(&s, &mut p, 1, 1).is_err());
        let mut s = Scenario::standard(0.25, 120.0);
        s.no_answer_after = 10.0;
        assert!(simulate(&s, &mut p, 1, 1)
            .unwrap_err()
            .to_string()
            .contains("15 seconds"));
        let mut s = Scenario::standard(0.25, 120.0);
        s.talk = Dist::Exponential { mean: -3.0 };
        assert!(simulate(&s, &mut p, 1, 1).is_err());
    }
}
