//! Pacers: how many numbers to dial right now.
//!
//! Every pacer is a sans-IO state machine: [`Pacer::handle`] takes the campaign's events
//! with their time, [`Pacer::dials`] answers "dial k now" for the current time. The
//! campaign manager calls `dials` at least every 250 ms.

use std::collections::{HashMap, HashSet};

use crate::abandon::{AbandonLedger, Millis};
use crate::dist::{check_duration, check_probability, ParamError};

pub type AgentId = u64;
pub type CallId = u64;

/// What happened in the campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An operator joined the campaign, idle.
    AgentJoined(AgentId),
    AgentLeft(AgentId),
    /// The operator is free for the next call (after wrap-up).
    AgentReady(AgentId),
    /// A preview-mode operator asks for the next number.
    PreviewRequest(AgentId),
    /// A call was launched.
    CallPlaced(CallId),
    /// Answered; `human` is the answering-machine detection's verdict.
    CallAnswered {
        call: CallId,
        human: bool,
    },
    /// No answer, busy or failed: resolved without an answer.
    CallUnanswered(CallId),
    /// A live answer was bridged to an operator, who now talks.
    CallConnected {
        call: CallId,
        agent: AgentId,
    },
    /// A live answer found no operator within the connect window: dropped.
    CallAbandoned(CallId),
    /// The operator's conversation ended; wrap-up starts.
    TalkEnded(AgentId),
    /// The operator will leave after the call in progress (a pending logout, a break
    /// asked for): not counted as coming free. An idle operator leaves at once.
    AgentLeaving(AgentId),
    /// A call detection passed as a person and counted as a live answer at
    /// `answered_at` was a machine (the operator says so): it leaves the live answers.
    NotLiveAfterAll {
        answered_at: Millis,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// The operator asks for each number.
    Preview,
    /// One call per free operator.
    Progressive,
    /// A fixed number of calls per free operator.
    Power { ratio: f64 },
    /// Adaptive: launch so that expected live answers match operators expected free.
    Predictive,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PacerConfig {
    pub mode: Mode,
    /// Legal ceiling of the abandon rate (e.g. 0.03).
    pub max_abandon_rate: f64,
    /// What the predictive pacer steers to, a little under the ceiling.
    pub aim_abandon_rate: f64,
    /// Share of machine verdicts estimated to be people (Ofcom's count).
    pub amd_false_positive_share: f64,
    /// Priors used until the campaign has its own history, seconds and probability.
    pub prior_live_probability: f64,
    pub prior_ring_seconds: f64,
    pub prior_talk_seconds: f64,
    pub prior_wrap_seconds: f64,
    /// With the abandon budget spent, dial one call per free operator (power and
    /// predictive). Off only for reference runs of a plain fixed ratio.
    pub budget_fallback: bool,
    /// The campaign's time zone, minutes east of UTC: Ofcom's 24 hours are also counted
    /// as its calendar day, so times given to the pacer are Unix epoch milliseconds.
    pub utc_offset_minutes: i32,
    /// Live answers the campaign has over 30 days before power or predictive pacing
    /// (until then one call per free operator): its estimates are priors, not its own
    /// figures, and the abandon budget is not yet in force. 0: none (the benches' days).
    pub campaign_warm_up_live: u64,
}

impl PacerConfig {
    pub fn new(mode: Mode) -> PacerConfig {
        PacerConfig {
            mode,
            max_abandon_rate: 0.03,
            aim_abandon_rate: 0.025,
            amd_false_positive_share: 0.02,
            prior_live_probability: 0.25,
            prior_ring_seconds: 10.0,
            prior_talk_seconds: 120.0,
            prior_wrap_seconds: 10.0,
            budget_fallback: true,
            utc_offset_minutes: 0,
            campaign_warm_up_live: 0,
        }
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        check_probability("max_abandon_rate", self.max_abandon_rate)?;
        check_probability("aim_abandon_rate", self.aim_abandon_rate)?;
        check_probability("amd_false_positive_share", self.amd_false_positive_share)?;
        check_probability("prior_live_probability", self.prior_live_probability)?;
        check_duration("prior_ring_seconds", self.prior_ring_seconds)?;
        check_duration("prior_talk_seconds", self.prior_talk_seconds)?;
        check_duration("prior_wrap_seconds", self.prior_wrap_seconds)?;
        if self.aim_abandon_rate > self.max_abandon_rate {
            return Err(ParamError {
                name: "aim_abandon_rate".into(),
                value: self.aim_abandon_rate,
                expected: "at most max_abandon_rate",
            });
        }
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return Err(ParamError {
                name: "utc_offset_minutes".into(),
                value: f64::from(self.utc_offset_minutes),
                expected: "from -840 to 840",
            });
        }
        if let Mode::Power { ratio } = self.mode {
            if !(ratio.is_finite() && (1.0..=10.0).contains(&ratio)) {
                return Err(ParamError {
                    name: "ratio".into(),
                    value: ratio,
                    expected: "from 1 to 10",
                });
            }
        }
        Ok(())
    }
}

/// Anything that decides how many numbers to dial.
pub trait Pacer {
    fn handle(&mut self, now: Millis, event: Event);
    /// Numbers to dial now.
    fn dials(&mut self, now: Millis) -> u32;
    /// Abandonment as the pacer counts it.
    fn ledger(&self) -> &AbandonLedger;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Human,
    Machine,
    Unanswered,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AgentState {
    Idle,
    Talking { since: Millis },
    WrapUp { since: Millis },
}

/// Online histogram of durations in 1-second bins, for conditional completion odds.
#[derive(Clone, Debug)]
struct Histogram {
    /// counts[i]: samples in [i, i+1) seconds; the last bin takes everything longer.
    counts: Vec<u32>,
    /// cumulative[i]: samples < i seconds (kept up to date on insert).
    cumulative: Vec<u32>,
    n: u32,
    sum: f64,
}

impl Histogram {
    fn new(max_seconds: usize) -> Histogram {
        Histogram {
            counts: vec![0; max_seconds],
            cumulative: vec![0; max_seconds + 1],
            n: 0,
            sum: 0.0,
        }
    }

    fn add(&mut self, seconds: f64) {
        let last = self.counts.len() - 1;
        let bin = (seconds.max(0.0) as usize).min(last);
        self.counts[bin] += 1;
        for c in &mut self.cumulative[bin + 1..] {
            *c += 1;
        }
        self.n += 1;
        self.sum += seconds;
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }

    /// Samples shorter than `seconds` (linear within a bin).
    fn below(&self, seconds: f64) -> f64 {
        let s = seconds.max(0.0);
        let i = s as usize;
        if i >= self.counts.len() {
            return f64::from(self.n);
        }
        f64::from(self.cumulative[i]) + f64::from(self.counts[i]) * (s - i as f64)
    }
}

/// The pacer of the four modes, with the regulators' abandonment budget.
#[derive(Clone, Debug)]
pub struct CampaignPacer {
    cfg: PacerConfig,
    agents: HashMap<AgentId, AgentState>,
    /// Operators who leave after their current call.
    leaving: HashSet<AgentId>,
    idle: u32,
    in_flight: HashMap<CallId, Millis>,
    preview_requests: u32,
    ledger: AbandonLedger,
    // What the campaign taught so far; outcome counts decay (about the last 100 resolved
    // calls weigh most) so the estimates follow an answer rate that drifts.
    resolved: f64,
    human_answers: f64,
    machine_answers: f64,
    ring: Histogram,
    talk: Histogram,
    wrap: Histogram,
    /// Multiplier the feedback controller applies to the abandon target of the launch rule.
    gain: f64,
    last_placed: Millis,
}

const TALK_MAX_SECONDS: usize = 3600;
/// Live answers a calendar day has before predictive pacing (see ``dials``): 10 keeps
/// every 30-day run's rolling 24 hours under 3% (at 1.0 aim, 0.40 answer rate and drift,
/// a day-start burst reached 3.20%) at the same talk occupancy.
const DAY_WARM_UP_LIVE: u64 = 10;

impl CampaignPacer {
    pub fn new(cfg: PacerConfig) -> Result<CampaignPacer, ParamError> {
        cfg.validate()?;
        Ok(CampaignPacer {
            cfg,
            agents: HashMap::new(),
            leaving: HashSet::new(),
            idle: 0,
            in_flight: HashMap::new(),
            preview_requests: 0,
            ledger: AbandonLedger::new(cfg.amd_false_positive_share)
                .with_utc_offset_minutes(cfg.utc_offset_minutes),
            resolved: 0.0,
            human_answers: 0.0,
            machine_answers: 0.0,
            ring: Histogram::new(120),
            talk: Histogram::new(TALK_MAX_SECONDS),
            wrap: Histogram::new(600),
            gain: 1.0,
            last_placed: 0,
        })
    }

    fn set_agent(&mut self, agent: AgentId, state: Option<AgentState>) {
        let old = match state {
            Some(s) => self.agents.insert(agent, s),
            None => self.agents.remove(&agent),
        };
        if old == Some(AgentState::Idle) {
            self.idle -= 1;
        }
        if state == Some(AgentState::Idle) {
            self.idle += 1;
        }
    }

    fn resolve(&mut self, how: Resolution) {
        const KEEP: f64 = 1.0 - 1.0 / 100.0;
        self.resolved = self.resolved * KEEP + 1.0;
        self.human_answers =
            self.human_answers * KEEP + f64::from(u8::from(how == Resolution::Human));
        self.machine_answers =
            self.machine_answers * KEEP + f64::from(u8::from(how == Resolution::Machine));
    }

    /// Live-answer probability with the prior weighted as 20 calls.
    fn p_live(&self) -> f64 {
        const PRIOR_WEIGHT: f64 = 20.0;
        (self.human_answers + PRIOR_WEIGHT * self.cfg.prior_live_probability)
            / (self.resolved + PRIOR_WEIGHT)
    }

    fn p_answered(&self) -> f64 {
        const PRIOR_WEIGHT: f64 = 20.0;
        let prior = (self.cfg.prior_live_probability * 1.6).min(1.0);
        (self.human_answers + self.machine_answers + PRIOR_WEIGHT * prior)
            / (self.resolved + PRIOR_WEIGHT)
    }

    fn ring_mean(&self) -> f64 {
        self.ring.mean().unwrap_or(self.cfg.prior_ring_seconds)
    }

    fn wrap_mean(&self) -> f64 {
        self.wrap.mean().unwrap_or(self.cfg.prior_wrap_seconds)
    }

    /// P(talk ends within `h` seconds | it has lasted `age` seconds).
    fn talk_ends_within(&self, age: f64, h: f64) -> f64 {
        if h <= 0.0 {
            return 0.0;
        }
        if self.talk.n < 30 {
            return 1.0 - (-h / self.cfg.prior_talk_seconds.max(1.0)).exp();
        }
        let n = f64::from(self.talk.n);
        let done = self.talk.below(age);
        if n - done < 1.0 {
            // Older than anything seen: assume the mean residual of an exponential.
            let mean = self
                .talk
                .mean()
                .unwrap_or(self.cfg.prior_talk_seconds)
                .max(1.0);
            return 1.0 - (-h / mean).exp();
        }
        ((self.talk.below(age + h) - done) / (n - done)).clamp(0.0, 1.0)
    }

    /// P(a call still ringing at `age` seconds ends in a live answer).
    fn live_given_ringing(&self, age: f64) -> f64 {
        let p_ans = self.p_answered();
        let p_live = self.p_live();
        let still_answering = if self.ring.n >= 20 {
            1.0 - self.ring.below(age) / f64::from(self.ring.n)
        } else {
            (-age / self.cfg.prior_ring_seconds.max(1.0)).exp()
        };
        let unresolved = p_ans * still_answering + (1.0 - p_ans);
        if unresolved <= 0.0 {
            return 0.0;
        }
        (p_live * still_answering / unresolved).clamp(0.0, 1.0)
    }

    /// Operators free within `h` seconds as (expected count, variance): idle now count
    /// surely; talking ones by their conditional odds of finishing talk and wrap-up in time.
    fn free_within(&self, now: Millis, h: f64) -> (f64, f64) {
        let wrap = self.wrap_mean();
        let (mut mean, mut var) = (f64::from(self.idle), 0.0);
        for (agent, state) in &self.agents {
            if self.leaving.contains(agent) {
                continue; // goes after this call: never free for the next
            }
            let q = match *state {
                AgentState::Idle => continue,
                AgentState::Talking { since } => {
                    let age = now.saturating_sub(since) as f64 / 1000.0;
                    self.talk_ends_within(age, h - wrap)
                }
                AgentState::WrapUp { since } => {
                    let done = now.saturating_sub(since) as f64 / 1000.0;
                    if wrap - done <= h {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
            mean += q;
            var += q * (1.0 - q);
        }
        (mean, var)
    }

    /// Steer the abandon target the launch rule uses toward the aimed rate (counted the
    /// Ofcom way), one outcome at a time: each live answer raises the gain a little, each
    /// abandon (and each detection drop, by the share of them estimated to be people)
    /// lowers it, so at equilibrium abandons are the aimed share of live answers. Stepping
    /// per outcome rather than per second keeps the controller as fast as the evidence
    /// comes and free of wind-up while the outcomes of a change are still ringing.
    fn control(&mut self, abandons: f64, live: f64) {
        const STEP: f64 = 0.02;
        let aim = self.cfg.aim_abandon_rate;
        self.gain = (self.gain * (STEP * (aim * live - abandons)).exp()).clamp(0.1, 4.0);
    }

    /// The largest k whose expected abandons stay within the target share of the expected
    /// live answers, with live answers L and freed operators F over one ring time taken as
    /// sums of independent Bernoulli trials and L − F approximated as normal.
    /// Operators free within one ring time, and live answers still to come from the calls
    /// ringing now: (free mean, free variance, live mean, live variance).
    fn outlook(&self, now: Millis) -> (f64, f64, f64, f64) {
        let horizon = self.ring_mean();
        let (free, free_var) = self.free_within(now, horizon);
        let (mut live, mut live_var) = (0.0, 0.0);
        for &placed in self.in_flight.values() {
            let r = self.live_given_ringing(now.saturating_sub(placed) as f64 / 1000.0);
            live += r;
            live_var += r * (1.0 - r);
        }
        (free, free_var, live, live_var)
    }

    /// Abandons the calls already ringing may still cause if the answer rate has just
    /// jumped by half (the estimate lags such a step by a few hundred calls): expected,
    /// plus two standard deviations of their live answers.
    fn ringing_risk(&self, outlook: (f64, f64, f64, f64)) -> f64 {
        const JUMP: f64 = 1.5;
        let (free, free_var, live, live_var) = outlook;
        let (live, live_var) = (live * JUMP, live_var * JUMP);
        expected_positive_part(live - free - 0.5, live_var + free_var) + 2.0 * live_var.sqrt()
    }

    /// At most `n` dials, and no more than the abandons they and the calls already ringing
    /// may cost (on the high side) leave of `budget` (one kept in reserve): a burst (every
    /// operator free at the day's start) must not spend more than the windows have left.
    fn within_budget(&self, n: u32, budget: f64, outlook: (f64, f64, f64, f64)) -> u32 {
        let (free, free_var, live, live_var) = outlook;
        // as if the answer rate had just jumped, as ringing_risk does: the estimate lags a
        // change (overnight, it is yesterday evening's)
        let p = (self.p_live() * 1.5).clamp(0.01, 1.0);
        // the abandons the answers may bring, high side: mean excess of live answers over
        // free operators plus two standard deviations
        let cost = |k: u32| {
            let k = f64::from(k);
            let var = live_var + free_var + k * p * (1.0 - p);
            (live + k * p - free - 0.5 + 2.0 * var.sqrt()).max(0.0)
        };
        let floor = self.idle.saturating_sub(self.in_flight.len() as u32);
        let mut k = n;
        while k > floor && cost(k) > budget - 1.0 {
            k -= 1;
        }
        k
    }

    /// `caution` scales the abandon target: 1 normally, less while the budget runs low.
    fn predictive(&self, outlook: (f64, f64, f64, f64), caution: f64) -> u32 {
        let (free, free_var, live, live_var) = outlook;
        if self.idle == 0 && free < 0.05 {
            return 0; // nobody can be free in time to take an answer
        }
        let p = self.p_live().max(0.01);
        // The share of live answers that may go unserved: what the regulator allows, less
        // what detection already takes (false positives), scaled by the feedback gain.
        let fp = self.machine_share() * self.cfg.amd_false_positive_share;
        let target =
            ((self.cfg.aim_abandon_rate * (1.0 + fp / p) - fp / p).max(0.0)) * self.gain * caution;
        let limit = 3 * self.agents.len() as u32;
        // What the live-answer estimate itself may be off by: its relative variance from
        // the (decayed) number of outcomes behind it. It scales every live answer expected
        // at once, so it weighs on bursts (all operators free at the start of the day, an
        // answer rate that stepped overnight) and hardly on the steady trickle.
        let rel_var = (1.0 - p) / (p * (self.resolved + 20.0));
        let mut k = 0;
        while k < limit {
            let n = f64::from(k + 1);
            let mean_l = live + n * p;
            let var = live_var + n * p * (1.0 - p) + free_var + mean_l * mean_l * rel_var;
            // L − F counts calls: E[X⁺] of an integer X ≈ E[(X′ − ½)⁺] of its normal X′.
            let excess = expected_positive_part(mean_l - free - 0.5, var);
            if excess > target * mean_l {
                break;
            }
            k += 1;
        }
        k
    }

    /// After an hour or more without a call (overnight, a paused campaign) what was learnt
    /// of the answer rate may be stale: it then weighs as 30 outcomes, so the first burst
    /// is dialled with that uncertainty and the estimate relearns fast.
    fn forget_if_stale(&mut self, now: Millis) {
        if now > self.last_placed + 3_600_000 && self.resolved > 30.0 {
            let f = 30.0 / self.resolved;
            self.resolved *= f;
            self.human_answers *= f;
            self.machine_answers *= f;
        }
    }

    /// Share of resolved calls that detection dropped as machines.
    fn machine_share(&self) -> f64 {
        self.machine_answers / self.resolved.max(1.0)
    }
}

/// E[max(X, 0)] for X normal with `mean` and `var`.
fn expected_positive_part(mean: f64, var: f64) -> f64 {
    if var <= 1e-12 {
        return mean.max(0.0);
    }
    let sd = var.sqrt();
    let z = mean / sd;
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    mean * normal_cdf(z) + sd * pdf
}

/// Standard normal CDF (Abramowitz–Stegun 26.2.17, |error| < 7.5e-8).
fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly = t
        * (0.319_381_530
            + t * (-0.356_563_782
                + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let upper = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 {
        1.0 - upper
    } else {
        upper
    }
}

impl Pacer for CampaignPacer {
    fn handle(&mut self, now: Millis, event: Event) {
        match event {
            Event::AgentJoined(a) => {
                self.leaving.remove(&a);
                self.set_agent(a, Some(AgentState::Idle));
            }
            // an operator who left (or is leaving) is not brought back by a late event
            Event::AgentReady(a) if !self.agents.contains_key(&a) => {}
            Event::AgentReady(a) if self.leaving.contains(&a) => {
                self.leaving.remove(&a);
                self.set_agent(a, None);
            }
            Event::AgentReady(a) => {
                if let Some(AgentState::WrapUp { since }) = self.agents.get(&a).copied() {
                    self.wrap.add(now.saturating_sub(since) as f64 / 1000.0);
                }
                self.set_agent(a, Some(AgentState::Idle));
            }
            Event::AgentLeft(a) => {
                self.leaving.remove(&a);
                self.set_agent(a, None);
            }
            Event::AgentLeaving(a) => match self.agents.get(&a) {
                Some(AgentState::Idle) => self.set_agent(a, None),
                Some(_) => {
                    self.leaving.insert(a);
                }
                None => {}
            },
            Event::NotLiveAfterAll { answered_at } => {
                self.ledger.not_live_after_all(answered_at, now);
            }
            Event::PreviewRequest(_) => self.preview_requests += 1,
            Event::CallPlaced(c) => {
                self.forget_if_stale(now);
                self.last_placed = now;
                self.in_flight.insert(c, now);
            }
            Event::CallAnswered { call, human } => {
                if let Some(placed) = self.in_flight.remove(&call) {
                    self.ring.add(now.saturating_sub(placed) as f64 / 1000.0);
                }
                self.resolve(if human {
                    Resolution::Human
                } else {
                    Resolution::Machine
                });
                if human {
                    self.ledger.live_answer(now);
                    self.control(0.0, 1.0);
                } else {
                    self.ledger.machine(now);
                    let fp = self.cfg.amd_false_positive_share;
                    self.control(fp, fp);
                }
            }
            Event::CallUnanswered(c) => {
                self.in_flight.remove(&c);
                self.resolve(Resolution::Unanswered);
            }
            Event::CallConnected { agent, .. } if self.agents.contains_key(&agent) => {
                self.set_agent(agent, Some(AgentState::Talking { since: now }))
            }
            Event::CallConnected { .. } => {}
            Event::CallAbandoned(_) => {
                self.ledger.abandoned(now);
                self.control(1.0, 0.0);
            }
            Event::TalkEnded(a) => {
                let Some(&state) = self.agents.get(&a) else {
                    return; // left during the call
                };
                if let AgentState::Talking { since } = state {
                    self.talk.add(now.saturating_sub(since) as f64 / 1000.0);
                }
                self.set_agent(a, Some(AgentState::WrapUp { since: now }));
            }
        }
    }

    fn dials(&mut self, now: Millis) -> u32 {
        let in_flight = self.in_flight.len() as u32;
        match self.cfg.mode {
            Mode::Preview => return std::mem::take(&mut self.preview_requests),
            Mode::Progressive => return self.idle.saturating_sub(in_flight),
            Mode::Power { .. } | Mode::Predictive => {}
        }
        self.forget_if_stale(now);
        if self.cfg.campaign_warm_up_live > 0
            && (self.cfg.budget_fallback || matches!(self.cfg.mode, Mode::Predictive))
            && self.ledger.window(now, 30 * 24).live < self.cfg.campaign_warm_up_live
        {
            return self.idle.saturating_sub(in_flight);
        }
        // A day's first calls go one per free operator until the day has its own answers:
        // the answer rate after a night may not be yesterday evening's, and every operator
        // is free at once, so a predictive burst on the old figures abandons in a heap.
        if matches!(self.cfg.mode, Mode::Predictive)
            && self.ledger.today(now).live < DAY_WARM_UP_LIVE
        {
            return self.idle.saturating_sub(in_flight);
        }
        let outlook = self.outlook(now);
        // The abandon budget left in both windows, less what the calls already ringing are
        // expected to cost: spent, only what cannot abandon (one call per free operator);
        // low (less than they could cost if the answer rate had just jumped), a tenth of
        // the usual abandon target until the slack is back.
        // The rolling windows hold from the day's first call (a burst at the day's start,
        // every operator free, must not go unchecked); the calendar day's own count once it
        // has 50 live answers to divide by.
        let budget = (self.cfg.budget_fallback && self.ledger.window(now, 30 * 24).live >= 50)
            .then(|| {
                if self.ledger.today(now).live >= 50 {
                    self.ledger.budget(now, self.cfg.max_abandon_rate)
                } else {
                    self.ledger.rolling_budget(now, self.cfg.max_abandon_rate)
                }
            });
        let (spent, low) = match budget {
            Some(budget) => {
                let (free, free_var, live, live_var) = outlook;
                let expected = expected_positive_part(live - free - 0.5, live_var + free_var);
                (
                    budget < 1.0 + expected,
                    budget < 1.0 + self.ringing_risk(outlook),
                )
            }
            None => (false, false),
        };
        let n = match self.cfg.mode {
            _ if spent => return self.idle.saturating_sub(in_flight),
            // A fixed ratio cannot be careful: it stops at the first sign.
            Mode::Power { .. } if low => return self.idle.saturating_sub(in_flight),
            Mode::Power { ratio } => {
                ((f64::from(self.idle) * ratio).floor() as u32).saturating_sub(in_flight)
            }
            _ => self.predictive(outlook, if low { 0.1 } else { 1.0 }),
        };
        match budget {
            Some(budget) => self.within_budget(n, budget, outlook),
            None => n,
        }
    }

    fn ledger(&self) -> &AbandonLedger {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(mode: Mode) -> CampaignPacer {
        CampaignPacer::new(PacerConfig::new(mode)).unwrap()
    }

    #[test]
    fn progressive_dials_one_per_free_operator() {
        let mut p = pacer(Mode::Progressive);
        p.handle(0, Event::AgentJoined(1));
        p.handle(0, Event::AgentJoined(2));
        assert_eq!(p.dials(0), 2);
        p.handle(0, Event::CallPlaced(10));
        p.handle(0, Event::CallPlaced(11));
        assert_eq!(p.dials(250), 0);
        p.handle(5000, Event::CallUnanswered(10));
        assert_eq!(p.dials(5000), 1);
    }

    #[test]
    fn power_dials_a_fixed_ratio_and_preview_waits_for_requests() {
        let mut p = pacer(Mode::Power { ratio: 2.5 });
        for a in 0..4 {
            p.handle(0, Event::AgentJoined(a));
        }
        assert_eq!(p.dials(0), 10);
        let mut v = pacer(Mode::Preview);
        v.handle(0, Event::AgentJoined(1));
        assert_eq!(v.dials(0), 0);
        v.handle(0, Event::PreviewRequest(1));
        assert_eq!(v.dials(0), 1);
        assert_eq!(v.dials(0), 0);
    }

    #[test]
    fn predictive_never_launches_when_no_operator_can_be_free_in_time() {
        let mut p = pacer(Mode::Predictive);
        // Teach it: talk always lasts 300 s, wrap-up 10 s, ring 10 s.
        for i in 0..40u64 {
            let t = i * 1000;
            p.handle(t, Event::AgentJoined(100 + i));
            p.handle(
                t,
                Event::CallConnected {
                    call: i,
                    agent: 100 + i,
                },
            );
            p.handle(t + 300_000, Event::TalkEnded(100 + i));
            p.handle(t + 310_000, Event::AgentLeft(100 + i));
        }
        p.handle(400_000, Event::AgentJoined(1));
        p.handle(400_000, Event::CallConnected { call: 99, agent: 1 });
        // 10 s into a 300 s conversation: cannot be free within a 10 s ring.
        assert_eq!(p.dials(410_000), 0);
        // An idle operator: it dials.
        p.handle(410_000, Event::AgentJoined(2));
        assert!(p.dials(410_250) >= 1);
    }

    #[test]
    fn a_new_campaign_dials_one_per_free_operator_until_its_own_live_answers() {
        let mut cfg = PacerConfig::new(Mode::Predictive);
        cfg.campaign_warm_up_live = 50;
        let mut p = CampaignPacer::new(cfg).unwrap();
        for a in 0..10 {
            p.handle(0, Event::AgentJoined(a));
        }
        // n live answers (each talked 60 s, the operator free again) among 4n calls
        let mut call = 0;
        let mut at = 1_000;
        let mut live = |p: &mut CampaignPacer, n: u64| -> Millis {
            for i in 0..n {
                let agent = i % 10;
                call += 1;
                p.handle(at, Event::CallPlaced(call));
                p.handle(at + 5_000, Event::CallAnswered { call, human: true });
                p.handle(at + 5_000, Event::CallConnected { call, agent });
                p.handle(at + 65_000, Event::TalkEnded(agent));
                p.handle(at + 70_000, Event::AgentReady(agent));
                for _ in 0..3 {
                    call += 1;
                    p.handle(at, Event::CallPlaced(call));
                    p.handle(at + 20_000, Event::CallUnanswered(call));
                }
                at += 7_000;
            }
            at + 100_000
        };
        let now = live(&mut p, 49);
        assert_eq!(p.dials(now), 10, "49 live answers: one per free operator");
        let now = live(&mut p, 1);
        assert!(
            p.dials(now) > 10,
            "50: predictive overdials for free operators"
        );
    }

    #[test]
    fn with_the_budget_spent_predictive_degrades_to_progressive() {
        let mut p = pacer(Mode::Predictive);
        for a in 0..10 {
            p.handle(0, Event::AgentJoined(a));
        }
        assert_eq!(p.dials(0), 10, "a day's first calls: one per free operator");
        for c in 0..DAY_WARM_UP_LIVE {
            p.handle(0, Event::CallPlaced(500 + c));
            p.handle(0, Event::CallUnanswered(500 + c));
        }
        // the day's answers (not abandoned: counted in the budget's favour below)
        let mut answered = 0;
        for c in 0..4 * DAY_WARM_UP_LIVE {
            p.handle(0, Event::CallPlaced(600 + c));
            if c % 4 == 0 {
                p.handle(
                    500,
                    Event::CallAnswered {
                        call: 600 + c,
                        human: true,
                    },
                );
                answered += 1;
            } else {
                p.handle(500, Event::CallUnanswered(600 + c));
            }
        }
        assert_eq!(answered, DAY_WARM_UP_LIVE);
        assert!(
            p.dials(600) > 10,
            "predictive overdials while nobody is busy"
        );
        // 100 live answers, 5 abandoned: over 3% in both windows.
        for c in 0..100 {
            p.handle(1000, Event::CallPlaced(1000 + c));
            p.handle(
                2000,
                Event::CallAnswered {
                    call: 1000 + c,
                    human: true,
                },
            );
        }
        for c in 0..5 {
            p.handle(2500, Event::CallAbandoned(1000 + c));
        }
        assert_eq!(p.dials(3000), 10, "one per free operator");
    }

    /// A predictive pacer that learnt a 25% live-answer rate (800 calls, 200 people), with
    /// `abandoned` of those people abandoned, and `agents` idle operators.
    fn taught(agents: u64, abandoned: u64) -> CampaignPacer {
        let mut p = pacer(Mode::Predictive);
        for a in 0..agents {
            p.handle(0, Event::AgentJoined(a));
        }
        for c in 0..800u64 {
            p.handle(1000, Event::CallPlaced(c));
            if c % 4 == 0 {
                p.handle(
                    9000,
                    Event::CallAnswered {
                        call: c,
                        human: true,
                    },
                );
            } else {
                p.handle(20_000, Event::CallUnanswered(c));
            }
        }
        for c in 0..abandoned {
            p.handle(9500, Event::CallAbandoned(c * 4));
        }
        p
    }

    #[test]
    fn a_low_budget_dials_between_progressive_and_the_full_target() {
        // 200 live answers: 3% allows 6 abandons. Four used: 2 left, less than what 10
        // ringing calls could cost after a jump in the answer rate, more than expected.
        let (mut full, mut low) = (taught(10, 0), taught(10, 4));
        for p in [&mut full, &mut low] {
            for c in 0..10 {
                p.handle(21_000, Event::CallPlaced(10_000 + c));
            }
        }
        let (f, l) = (full.dials(21_000), low.dials(21_000));
        assert!(l < f, "low budget {l} < full {f}");
        assert!(l > 0, "still above progressive's 10 − 10 in flight = 0");
        // Spent (6 abandons): one call per free operator not already called for.
        let mut spent = taught(10, 6);
        for c in 0..4 {
            spent.handle(21_000, Event::CallPlaced(10_000 + c));
        }
        assert_eq!(spent.dials(21_000), 6);
    }

    #[test]
    fn each_abandon_lowers_the_target_and_clean_answers_raise_it() {
        let mut p = taught(10, 0);
        let clean = p.gain;
        assert!(clean > 1.0, "200 live answers, none abandoned: {clean}");
        p.handle(30_000, Event::CallAbandoned(4));
        assert!(p.gain < clean * 0.99);
        // At the aimed 2.5% the gain holds: 40 live answers and one abandon.
        let before = p.gain;
        for c in 0..40 {
            p.handle(31_000, Event::CallPlaced(50_000 + c));
            p.handle(
                40_000,
                Event::CallAnswered {
                    call: 50_000 + c,
                    human: true,
                },
            );
        }
        p.handle(40_500, Event::CallAbandoned(50_000));
        assert!((p.gain / before - 1.0).abs() < 1e-9);
    }

    #[test]
    fn after_a_night_the_first_burst_is_smaller() {
        // The same history, asked at once and after 16 hours without a call: what it learnt
        // weighs less, so it dials fewer numbers for the same free operators.
        // 40 operators, 30 of them just connected (not free within a ring time), 10 idle.
        let (mut now, mut later) = (taught(40, 0), taught(40, 0));
        for p in [&mut now, &mut later] {
            // (the abandon budget of this short history would cap both bursts alike)
            p.cfg.budget_fallback = false;
            for a in 0..30 {
                p.handle(20_000, Event::CallConnected { call: a, agent: a });
            }
        }
        let at_once = now.dials(21_000);
        let morning = later.dials(20_000 + 16 * 3_600_000);
        assert!(morning < at_once, "{morning} < {at_once}");
        assert!(
            morning >= 10,
            "still at least one per free operator: {morning}"
        );
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let mut cfg = PacerConfig::new(Mode::Power { ratio: 0.5 });
        assert!(CampaignPacer::new(cfg).is_err());
        cfg.mode = Mode::Predictive;
        cfg.aim_abandon_rate = 0.05;
        assert!(CampaignPacer::new(cfg).is_err());
        cfg.aim_abandon_rate = 0.02;
        cfg.prior_talk_seconds = -1.0;
        assert!(CampaignPacer::new(cfg).is_err());
        cfg.prior_talk_seconds = 120.0;
        cfg.utc_offset_minutes = 15 * 60;
        assert!(CampaignPacer::new(cfg).is_err());
    }

    #[test]
    fn a_burst_is_capped_by_what_the_windows_have_left() {
        // 200 live answers and no abandon: the windows allow 0.03 x 175 = 5.25 more
        // (looking ahead at the oldest eighth leaving). Forty operators, all free: the
        // burst is capped where its answers could cost more than that, on the high side,
        // but never below one call per free operator.
        let mut capped = taught(40, 0);
        let mut free = taught(40, 0);
        free.cfg.budget_fallback = false;
        let (c, f) = (capped.dials(21_000), free.dials(21_000));
        assert!(c < f, "{c} < {f}");
        assert!(c >= 40, "{c}");
    }

    #[test]
    fn operators_leaving_after_their_call_are_not_counted_as_coming_free() {
        let (mut staying, mut going) = (taught(40, 0), taught(40, 0));
        for p in [&mut staying, &mut going] {
            p.cfg.budget_fallback = false;
            for a in 0..30 {
                p.handle(20_000, Event::CallConnected { call: a, agent: a });
                p.handle(91_000, Event::TalkEnded(a)); // wrap-up nearly done: free soon
            }
        }
        for a in 0..20 {
            going.handle(100_500, Event::AgentLeaving(a));
        }
        let (s, g) = (staying.dials(101_000), going.dials(101_000));
        assert!(g < s, "{g} < {s}");
        // their wrap-up ends: they go, and a late "ready" does not bring them back
        for a in 0..20 {
            going.handle(110_000, Event::AgentReady(a));
            going.handle(110_500, Event::AgentReady(a));
        }
        assert_eq!(going.agents.len(), 20);
        assert_eq!(going.idle, 10);
        // an idle operator who asks to leave goes at once
        going.handle(111_000, Event::AgentLeaving(35));
        assert_eq!((going.agents.len(), going.idle), (19, 9));
        // events about an operator who left change nothing
        going.handle(112_000, Event::TalkEnded(35));
        going.handle(112_000, Event::CallConnected { call: 9, agent: 35 });
        assert_eq!(going.agents.len(), 19);
    }

    #[test]
    fn a_machine_the_operator_found_leaves_the_live_answers() {
        let mut p = taught(10, 0);
        let before = p.ledger().last_24_hours(30_000).live;
        p.handle(30_000, Event::NotLiveAfterAll { answered_at: 9000 });
        assert_eq!(p.ledger().last_24_hours(30_000).live, before - 1);
    }
}
