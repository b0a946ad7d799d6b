//! The ACD state machine: agents, queues and calls; events and the current time in,
//! [`Action`]s out, and the next time it wants to be woken.
//!
//! Contract (as str0m's): call an input method with `now`, then drain [`Acd::poll_action`];
//! call [`Acd::handle_timeout`] at or after [`Acd::next_timeout`]. Time is milliseconds on
//! any monotonic scale the caller chooses; a `now` earlier than one already seen is taken
//! as the latest seen (the core never moves backwards).
//!
//! Cost: Ready agents are indexed per queue and per skill-expansion tier, ordered by the
//! queue strategy's key; waiting calls per queue and tier, ordered by priority then arrival.
//! A routing decision looks at the first element of a few ordered sets (O(log n)); an
//! agent's state change touches only the queues that agent serves.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use crate::ewt::WaitModel;
use crate::skills::{SkillExpr, SkillId, MAX_LEVEL};

pub type Millis = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u32);

/// A not-ready reason code. 0–2 are the ACD's own; the rest are the center's
/// (lunch, break, training, …), named by the configuration above this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reason(pub u16);

impl Reason {
    /// Just logged in, not yet Ready.
    pub const LOGIN: Reason = Reason(0);
    /// Missed `missed_offers_to_not_ready` offers in a row.
    pub const MISSED_OFFER: Reason = Reason(1);
    /// Forced by a supervisor.
    pub const SUPERVISOR: Reason = Reason(2);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Agent Ready the longest first.
    LongestIdle,
    /// Lowest share of logged-in time spent on calls first (ties: longest idle).
    LeastOccupied,
    /// Highest level in the queue's first skill first (ties: longest idle).
    MostSkilled,
    /// The agent this queue offered to longest ago first.
    RoundRobin,
    /// Fewest calls handled since login first (ties: longest idle).
    FewestCalls,
    /// Random, weighted by the level in the queue's first skill (seeded, reproducible).
    WeightedRandom,
}

/// Where a call goes when it waited too long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Leave the ACD with outcome TimedOut.
    None,
    /// Move into another queue of this ACD (keeps its id and its total wait).
    Queue(QueueId),
    /// Leave the ACD with outcome Overflowed(code): voicemail, another site, …
    External(u32),
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub name: String,
    /// Which agents may take calls of this queue.
    pub skills: SkillExpr,
    /// Skill expansion: after waiting this long (in this queue), the call also accepts
    /// agents matching the expression. Times must increase.
    pub expansions: Vec<(Millis, SkillExpr)>,
    pub strategy: Strategy,
    /// Added to each call's priority in this queue.
    pub priority_weight: i32,
    /// Service-level threshold (e.g. 20 s of "80% in 20 s").
    pub sl_threshold: Millis,
    pub wrap_up: Millis,
    /// How long an offer rings before it counts as missed.
    pub offer_timeout: Millis,
    pub max_wait: Option<Millis>,
    pub max_length: Option<usize>,
    pub overflow: Overflow,
    /// After this many missed offers in a row the agent goes NotReady(MISSED_OFFER); 0: never.
    pub missed_offers_to_not_ready: u32,
    /// Length of the sliding window of live statistics.
    pub stats_window: Millis,
    /// Handle time (talk + wrap-up) expected before any call of this node was handled:
    /// the estimated wait's starting point (see [`crate::ewt`]).
    pub expected_handle: Millis,
}

impl QueueConfig {
    pub fn new(name: &str, skills: SkillExpr) -> QueueConfig {
        QueueConfig {
            name: name.to_owned(),
            skills,
            expansions: Vec::new(),
            strategy: Strategy::LongestIdle,
            priority_weight: 0,
            sl_threshold: 20_000,
            wrap_up: 10_000,
            offer_timeout: 15_000,
            max_wait: None,
            max_length: None,
            overflow: Overflow::None,
            missed_offers_to_not_ready: 1,
            stats_window: 15 * 60_000,
            expected_handle: 180_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    Ready,
    NotReady(Reason),
    Offered { call: CallId, deadline: Millis },
    Busy { call: CallId },
    WrapUp { until: Millis },
}

/// The six states, for counting and accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    LoggedOut = 0,
    Ready = 1,
    NotReady = 2,
    Offered = 3,
    Busy = 4,
    WrapUp = 5,
}

pub const STATE_KINDS: usize = 6;

impl AgentState {
    pub fn kind(&self) -> StateKind {
        match self {
            AgentState::LoggedOut => StateKind::LoggedOut,
            AgentState::Ready => StateKind::Ready,
            AgentState::NotReady(_) => StateKind::NotReady,
            AgentState::Offered { .. } => StateKind::Offered,
            AgentState::Busy { .. } => StateKind::Busy,
            AgentState::WrapUp { .. } => StateKind::WrapUp,
        }
    }
}

/// How a call left the queue: every call ends in exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered {
        agent: AgentId,
    },
    Abandoned,
    Overflowed(u32),
    TimedOut,
    /// The caller took another way out while waiting (a voicemail, a callback request):
    /// neither served nor abandoned.
    Withdrawn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ring `agent` with `call`; answer, reject or let the deadline pass.
    Offer {
        call: CallId,
        agent: AgentId,
        queue: QueueId,
        deadline: Millis,
    },
    /// Stop ringing: the deadline passed, or the caller hung up.
    RevokeOffer { call: CallId, agent: AgentId },
    /// The call moved into another queue (overflow); it keeps waiting.
    Moved {
        call: CallId,
        from: QueueId,
        to: QueueId,
    },
    /// The call left the ACD's queues for good; `waited` since it first entered.
    CallLeft {
        call: CallId,
        queue: QueueId,
        outcome: Outcome,
        waited: Millis,
    },
    /// An agent's state changed.
    AgentChanged { agent: AgentId, state: AgentState },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcdError {
    UnknownAgent(AgentId),
    UnknownCall(CallId),
    UnknownQueue(QueueId),
    AlreadyLoggedIn(AgentId),
    DuplicateCall(CallId),
    /// The transition is not allowed from the agent's state; nothing changed.
    IllegalTransition {
        agent: AgentId,
        from: StateKind,
        action: &'static str,
    },
    /// The call is not ringing an agent (answer/reject) or not being served (end).
    WrongCallState {
        call: CallId,
        action: &'static str,
    },
    QueueFull {
        queue: QueueId,
        length: usize,
    },
    BadConfig(String),
}

impl fmt::Display for AcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcdError::UnknownAgent(a) => write!(f, "agent {} is not logged in", a.0),
            AcdError::UnknownCall(c) => write!(f, "call {} is not known to the ACD", c.0),
            AcdError::UnknownQueue(q) => write!(f, "queue {} does not exist", q.0),
            AcdError::AlreadyLoggedIn(a) => write!(f, "agent {} is already logged in", a.0),
            AcdError::DuplicateCall(c) => write!(f, "call {} is already queued", c.0),
            AcdError::IllegalTransition {
                agent,
                from,
                action,
            } => {
                write!(f, "agent {}: cannot {action} while {from:?}", agent.0)
            }
            AcdError::WrongCallState { call, action } => {
                write!(f, "call {}: cannot {action} in its current state", call.0)
            }
            AcdError::QueueFull { queue, length } => {
                write!(f, "queue {} is full ({length} calls waiting)", queue.0)
            }
            AcdError::BadConfig(s) => write!(f, "bad queue configuration: {s}"),
        }
    }
}

impl std::error::Error for AcdError {}

// ---------------------------------------------------------------------------------------

/// Order of waiting calls within a queue: higher priority first, then arrival order. The
/// time the call entered its queue rides along (it never changes while the call is in a
/// set) so that routing reads a queue head's service-level deadline without a lookup.
type CallKey = (Reverse<i32>, Millis, u64);

/// Ids are assigned by ccorch itself, not chosen by callers, so a multiplicative hash is
/// enough, and it is far cheaper than SipHash on every routing decision.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
/// Order of Ready agents within a queue tier: the strategy's key, then the agent id.
type AgentKey = ((u64, u64), AgentId);

/// Ready agents of one queue tier, in the order the queue's strategy picks them.
#[derive(Clone, Debug)]
enum ReadyIndex {
    /// Ordered by the strategy's key: the first is the pick.
    Ordered(BTreeSet<AgentKey>),
    /// Weighted random by level: agents bucketed by their level, each bucket a vector
    /// with positions remembered, so insert, remove and pick are O(levels).
    Weighted {
        by_level: Vec<Vec<AgentId>>,
        pos: IdMap<AgentId, (u8, usize)>,
    },
}

impl ReadyIndex {
    fn new(strategy: Strategy) -> ReadyIndex {
        match strategy {
            Strategy::WeightedRandom => ReadyIndex::Weighted {
                by_level: vec![Vec::new(); MAX_LEVEL as usize + 1],
                pos: IdMap::default(),
            },
            _ => ReadyIndex::Ordered(BTreeSet::new()),
        }
    }

    fn insert(&mut self, key: (u64, u64), agent: AgentId, level: u8) {
        match self {
            ReadyIndex::Ordered(set) => {
                set.insert((key, agent));
            }
            ReadyIndex::Weighted { by_level, pos } => {
                let bucket = &mut by_level[level as usize];
                pos.insert(agent, (level, bucket.len()));
                bucket.push(agent);
            }
        }
    }

    fn remove(&mut self, key: (u64, u64), agent: AgentId) {
        match self {
            ReadyIndex::Ordered(set) => {
                set.remove(&(key, agent));
            }
            ReadyIndex::Weighted { by_level, pos } => {
                if let Some((level, i)) = pos.remove(&agent) {
                    let bucket = &mut by_level[level as usize];
                    bucket.swap_remove(i);
                    if let Some(&moved) = bucket.get(i) {
                        pos.insert(moved, (level, i));
                    }
                }
            }
        }
    }

    fn contains(&self, key: (u64, u64), agent: AgentId) -> bool {
        match self {
            ReadyIndex::Ordered(set) => set.contains(&(key, agent)),
            ReadyIndex::Weighted { pos, .. } => pos.contains_key(&agent),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            ReadyIndex::Ordered(set) => set.is_empty(),
            ReadyIndex::Weighted { pos, .. } => pos.is_empty(),
        }
    }

    fn agents(&self) -> Vec<AgentId> {
        match self {
            ReadyIndex::Ordered(set) => set.iter().map(|&(_, a)| a).collect(),
            ReadyIndex::Weighted { pos, .. } => pos.keys().copied().collect(),
        }
    }

    /// Sum of the levels of the agents in a weighted index (0 for an ordered one).
    fn weight(&self) -> u64 {
        match self {
            ReadyIndex::Ordered(_) => 0,
            ReadyIndex::Weighted { by_level, .. } => by_level
                .iter()
                .enumerate()
                .map(|(level, bucket)| level as u64 * bucket.len() as u64)
                .sum(),
        }
    }

    /// The agent at weighted position `r` (< `weight()`).
    fn pick_weighted(&self, mut r: u64) -> Option<AgentId> {
        let ReadyIndex::Weighted { by_level, .. } = self else {
            return None;
        };
        for (level, bucket) in by_level.iter().enumerate() {
            let weight = level as u64 * bucket.len() as u64;
            if r < weight {
                return bucket.get((r / level as u64) as usize).copied();
            }
            r -= weight;
        }
        None
    }
}

/// The strategy's pick over the Ready indexes of tiers 0..=t (each agent sits in the one
/// of its lowest eligible tier); `random` serves the weighted strategy only.
fn pick_across(indexes: &[ReadyIndex], random: u64) -> Option<AgentId> {
    match indexes.first()? {
        ReadyIndex::Ordered(_) => indexes
            .iter()
            .filter_map(|index| match index {
                ReadyIndex::Ordered(set) => set.first(),
                ReadyIndex::Weighted { .. } => None,
            })
            .min()
            .map(|&(_, agent)| agent),
        ReadyIndex::Weighted { .. } => {
            let total: u64 = indexes.iter().map(ReadyIndex::weight).sum();
            if total == 0 {
                return None;
            }
            let mut r = random % total;
            for index in indexes {
                let w = index.weight();
                if r < w {
                    return index.pick_weighted(r);
                }
                r -= w;
            }
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    OfferDeadline(CallId),
    WrapUpEnd(AgentId),
    NextTier(CallId),
    PreferredEnd(CallId),
    MaxWait(CallId),
}

type TimerKey = (Millis, Timer);

#[derive(Clone, Debug)]
struct Membership {
    queue: QueueId,
    /// Lowest expansion tier at which the agent is eligible.
    min_tier: u8,
    /// Level in the queue's first skill (1 if none).
    rank_level: u8,
    /// Round-robin: the queue's offer counter when it last offered to this agent.
    last_rr: u64,
    /// Keys inserted into this queue's Ready index while Ready.
    ready_key: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct Agent {
    id: AgentId,
    memberships: Vec<Membership>,
    state: AgentState,
    since: Millis,
    logged_in_at: Millis,
    /// NotReady asked for while ringing or on a call: applied when that ends.
    pending: Option<Reason>,
    missed_in_row: u32,
    /// This wrap-up was extended already (once per wrap-up).
    wrap_extended: bool,
    handled: u64,
    time_in: [Millis; STATE_KINDS],
    /// Calls reserved for this agent (preferred agent) while their window lasts.
    targeted: BTreeSet<(CallKey, CallId)>,
}

impl Agent {
    fn occupancy_ppm(&self, now: Millis) -> u64 {
        let logged = now.saturating_sub(self.logged_in_at).max(1);
        let mut working = self.time_in[StateKind::Offered as usize]
            + self.time_in[StateKind::Busy as usize]
            + self.time_in[StateKind::WrapUp as usize];
        if matches!(
            self.state.kind(),
            StateKind::Offered | StateKind::Busy | StateKind::WrapUp
        ) {
            working += now.saturating_sub(self.since);
        }
        (working.saturating_mul(1_000_000) / logged).min(1_000_000)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Reserved for its preferred agents until their windows close.
    Targeted,
    Waiting,
    Offered {
        agent: AgentId,
    },
    InService {
        agent: AgentId,
    },
}

#[derive(Clone, Debug)]
struct Call {
    id: CallId,
    queue: QueueId,
    priority: i32,
    seq: u64,
    /// When it first entered any queue (for the outcome's wait).
    first_enqueued: Millis,
    /// When it entered its current queue (for tiers, SL and max wait).
    entered: Millis,
    tier: u8,
    state: CallState,
    /// Preferred agents with the end of each one's window.
    preferred: Vec<(AgentId, Millis)>,
    timers: Vec<TimerKey>,
}

impl Call {
    /// Order within a tier: priority, then first arrival (a caller transferred back into
    /// a queue keeps the place its earlier wait earned), then the order of enqueueing.
    fn key(&self) -> CallKey {
        (Reverse(self.priority), self.first_enqueued, self.seq)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    slot: u64,
    entered: u32,
    answered: u32,
    answered_in_sl: u32,
    abandoned: u32,
    answered_wait: Millis,
    abandoned_wait: Millis,
    handled: u32,
    handle_time: Millis,
}

const BUCKETS: usize = 15;

#[derive(Clone, Debug)]
struct Queue {
    id: QueueId,
    cfg: QueueConfig,
    /// Ready agents by their lowest eligible tier: a call at tier t may take any of 0..=t.
    ready: Vec<ReadyIndex>,
    /// Waiting calls at each tier (a call is in exactly one).
    waiting: Vec<BTreeSet<(CallKey, CallId)>>,
    /// Waiting and targeted calls by time entered, for the oldest wait.
    by_age: BTreeSet<(Millis, u64)>,
    offered: usize,
    rr_counter: u64,
    /// Members (eligible agents logged in) by state.
    members_in: [u32; STATE_KINDS],
    buckets: [Bucket; BUCKETS],
    /// Handle time and patience, learned with a long memory, for the estimated wait.
    model: WaitModel,
}

impl Queue {
    fn tiers(&self) -> usize {
        self.cfg.expansions.len() + 1
    }

    fn bucket_len(&self) -> Millis {
        (self.cfg.stats_window / BUCKETS as u64).max(1)
    }

    fn bucket(&mut self, now: Millis) -> &mut Bucket {
        let slot = now / self.bucket_len();
        let b = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        b
    }

    fn window(&self, now: Millis) -> Bucket {
        let current = now / self.bucket_len();
        let mut sum = Bucket::default();
        for b in &self.buckets {
            if b.slot + (BUCKETS as u64) > current && b.slot <= current {
                sum.entered += b.entered;
                sum.answered += b.answered;
                sum.answered_in_sl += b.answered_in_sl;
                sum.abandoned += b.abandoned;
                sum.answered_wait += b.answered_wait;
                sum.abandoned_wait += b.abandoned_wait;
                sum.handled += b.handled;
                sum.handle_time += b.handle_time;
            }
        }
        sum
    }
}

/// Live figures of one queue over its sliding window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueStats {
    pub waiting: usize,
    pub ringing: usize,
    pub oldest_wait: Millis,
    /// Members logged in, by state (indexed by [`StateKind`]).
    pub agents: [u32; STATE_KINDS],
    pub entered: u32,
    pub answered: u32,
    pub abandoned: u32,
    /// Answered within the threshold over answered + abandoned; None before any.
    pub service_level: Option<f64>,
    /// Mean wait of answered calls.
    pub asa: Option<f64>,
    pub abandon_rate: Option<f64>,
    /// Mean talk plus wrap-up of calls finished in the window.
    pub aht: Option<f64>,
}

/// Live figures of one agent since login.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AgentStats {
    pub state: AgentState,
    pub handled: u64,
    pub occupancy: f64,
    /// Mean talk plus wrap-up per handled call; None before the first.
    pub aht: Option<f64>,
    /// Milliseconds spent in each state since login (indexed by [`StateKind`]).
    pub time_in: [Millis; STATE_KINDS],
}

/// The ACD.
#[derive(Debug)]
pub struct Acd {
    queues: Vec<Queue>,
    agents: IdMap<AgentId, Agent>,
    calls: IdMap<CallId, Call>,
    timers: BTreeSet<TimerKey>,
    actions: VecDeque<Action>,
    now: Millis,
    next_seq: u64,
    rng: u64,
}

impl Acd {
    /// A new ACD; `seed` drives the weighted-random strategy only.
    pub fn new(seed: u64) -> Acd {
        Acd {
            queues: Vec::new(),
            agents: IdMap::default(),
            calls: IdMap::default(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            now: 0,
            next_seq: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    // ---- configuration ----

    pub fn add_queue(&mut self, cfg: QueueConfig) -> Result<QueueId, AcdError> {
        validate_queue(&cfg, self.queues.len())?;
        let id = QueueId(self.queues.len() as u32);
        let tiers = cfg.expansions.len() + 1;
        let cfg_handle = cfg.expected_handle;
        self.queues.push(Queue {
            id,
            ready: vec![ReadyIndex::new(cfg.strategy); tiers],
            cfg,
            waiting: vec![BTreeSet::new(); tiers],
            by_age: BTreeSet::new(),
            offered: 0,
            rr_counter: 0,
            members_in: [0; STATE_KINDS],
            buckets: [Bucket::default(); BUCKETS],
            model: WaitModel::new(cfg_handle as f64 / 1000.0),
        });
        Ok(id)
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    // ---- agents ----

    /// Log an agent in with its skills and the queues (groups) it chose; it starts
    /// NotReady(LOGIN). Queues whose skill expressions it matches at no tier are ignored.
    pub fn login(
        &mut self,
        now: Millis,
        agent: AgentId,
        skills: &[(SkillId, u8)],
        queues: &[QueueId],
    ) -> Result<(), AcdError> {
        let now = self.tick(now);
        if self.agents.contains_key(&agent) {
            return Err(AcdError::AlreadyLoggedIn(agent));
        }
        let mut memberships = Vec::new();
        for &q in queues {
            let queue = self
                .queues
                .get(q.0 as usize)
                .ok_or(AcdError::UnknownQueue(q))?;
            if memberships.iter().any(|m: &Membership| m.queue == q) {
                continue;
            }
            let tiers = std::iter::once(&queue.cfg.skills)
                .chain(queue.cfg.expansions.iter().map(|(_, e)| e));
            let Some(min_tier) = tiers
                .enumerate()
                .find(|(_, e)| e.matches(skills))
                .map(|(t, _)| t as u8)
            else {
                continue;
            };
            let rank_level = queue
                .cfg
                .skills
                .first_skill()
                .and_then(|s| skills.iter().find(|(k, _)| *k == s).map(|&(_, l)| l))
                .unwrap_or(1)
                .clamp(1, MAX_LEVEL);
            memberships.push(Membership {
                queue: q,
                min_tier,
                rank_level,
                last_rr: 0,
                ready_key: None,
            });
        }
        let state = AgentState::NotReady(Reason::LOGIN);
        for m in &memberships {
            self.queues[m.queue.0 as usize].members_in[StateKind::NotReady as usize] += 1;
        }
        self.agents.insert(
            agent,
            Agent {
                id: agent,
                memberships,
                state,
                since: now,
                logged_in_at: now,
                pending: None,
                missed_in_row: 0,
                wrap_extended: false,
                handled: 0,
                time_in: [0; STATE_KINDS],
                targeted: BTreeSet::new(),
            },
        );
        self.actions
            .push_back(Action::AgentChanged { agent, state });
        Ok(())
    }

    /// The agent asks to take calls. From NotReady or WrapUp (ending it early); while
    /// ringing or on a call it cancels a pending NotReady.
    pub fn set_ready(&mut self, now: Millis, agent: AgentId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let a = self
            .agents
            .get_mut(&agent)
            .ok_or(AcdError::UnknownAgent(agent))?;
        match a.state {
            AgentState::NotReady(_) => {}
            AgentState::WrapUp { until } => {
                // Ready said now wins over a Not ready asked during the call
                a.pending = None;
                self.timers.remove(&(until, Timer::WrapUpEnd(agent)));
            }
            AgentState::Offered { .. } | AgentState::Busy { .. } if a.pending.is_some() => {
                a.pending = None;
                return Ok(());
            }
            s => {
                return Err(AcdError::IllegalTransition {
                    agent,
                    from: s.kind(),
                    action: "become Ready",
                })
            }
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.missed_in_row = 0;
        }
        self.become_ready(now, agent);
        Ok(())
    }

    /// The agent (or a supervisor, with [`Reason::SUPERVISOR`]) stops taking calls. While
    /// ringing or on a call the request waits until the call and its wrap-up are over: the
    /// agent's own request wins over the automatic return to Ready.
    pub fn set_not_ready(
        &mut self,
        now: Millis,
        agent: AgentId,
        reason: Reason,
    ) -> Result<(), AcdError> {
        let now = self.tick(now);
        let a = self
            .agents
            .get_mut(&agent)
            .ok_or(AcdError::UnknownAgent(agent))?;
        match a.state {
            AgentState::Offered { .. } | AgentState::Busy { .. } => {
                a.pending = Some(reason);
                Ok(())
            }
            AgentState::NotReady(r) if r == reason => Err(AcdError::IllegalTransition {
                agent,
                from: StateKind::NotReady,
                action: "become NotReady with the same reason",
            }),
            AgentState::Ready | AgentState::NotReady(_) | AgentState::WrapUp { .. } => {
                if let AgentState::WrapUp { until } = a.state {
                    // said now, it replaces a Not ready asked for during the call
                    a.pending = None;
                    self.timers.remove(&(until, Timer::WrapUpEnd(agent)));
                }
                self.set_state(now, agent, AgentState::NotReady(reason));
                Ok(())
            }
            AgentState::LoggedOut => Err(AcdError::IllegalTransition {
                agent,
                from: StateKind::LoggedOut,
                action: "become NotReady",
            }),
        }
    }

    /// Log out; not while ringing or on a call.
    pub fn logout(&mut self, now: Millis, agent: AgentId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let a = self
            .agents
            .get(&agent)
            .ok_or(AcdError::UnknownAgent(agent))?;
        match a.state {
            AgentState::Offered { .. } | AgentState::Busy { .. } | AgentState::LoggedOut => {
                return Err(AcdError::IllegalTransition {
                    agent,
                    from: a.state.kind(),
                    action: "log out",
                })
            }
            AgentState::WrapUp { until } => {
                self.timers.remove(&(until, Timer::WrapUpEnd(agent)));
            }
            _ => {}
        }
        self.set_state(now, agent, AgentState::LoggedOut);
        // Calls reserved for this agent stop waiting for it.
        let targeted: Vec<CallId> = self
            .agents
            .get(&agent)
            .map(|a| a.targeted.iter().map(|&(_, c)| c).collect())
            .unwrap_or_default();
        for call in targeted {
            self.drop_preference(now, call, agent);
        }
        if let Some(a) = self.agents.remove(&agent) {
            for m in &a.memberships {
                self.queues[m.queue.0 as usize].members_in[StateKind::LoggedOut as usize] -= 1;
            }
        }
        Ok(())
    }

    // ---- calls ----

    /// Queue a call. `preferred` agents (assigned manager, last agent) each get it alone
    /// until their window ends; then anyone eligible may take it.
    pub fn enqueue(
        &mut self,
        now: Millis,
        call: CallId,
        queue: QueueId,
        priority: i32,
        preferred: &[(AgentId, Millis)],
    ) -> Result<(), AcdError> {
        self.enqueue_waited(now, call, queue, priority, preferred, 0)
    }

    /// [`Acd::enqueue`] for a caller who has waited `waited` ms already (an operator
    /// transferred the call back into a queue): its wait counts from then, for its place
    /// among equal priorities, the waited time reported and the service level.
    pub fn enqueue_waited(
        &mut self,
        now: Millis,
        call: CallId,
        queue: QueueId,
        priority: i32,
        preferred: &[(AgentId, Millis)],
        waited: Millis,
    ) -> Result<(), AcdError> {
        let now = self.tick(now);
        if self.calls.contains_key(&call) {
            return Err(AcdError::DuplicateCall(call));
        }
        let q = self
            .queues
            .get(queue.0 as usize)
            .ok_or(AcdError::UnknownQueue(queue))?;
        // A full queue sends new callers to its overflow target (following the chain,
        // which only points to earlier queues); with none, the call is refused.
        let mut target = queue;
        let mut q = q;
        while let Some(max) = q.cfg.max_length {
            let length = q.by_age.len();
            if length < max {
                break;
            }
            match q.cfg.overflow {
                Overflow::Queue(to) => {
                    target = to;
                    q = &self.queues[to.0 as usize];
                }
                Overflow::External(code) => {
                    self.actions.push_back(Action::CallLeft {
                        call,
                        queue: target,
                        outcome: Outcome::Overflowed(code),
                        waited: 0,
                    });
                    return Ok(());
                }
                Overflow::None => {
                    return Err(AcdError::QueueFull {
                        queue: target,
                        length,
                    })
                }
            }
        }
        if target != queue {
            self.actions.push_back(Action::Moved {
                call,
                from: queue,
                to: target,
            });
        }
        let queue = target;
        let weight = q.cfg.priority_weight;
        let seq = self.next_seq();
        let preferred: Vec<(AgentId, Millis)> = preferred
            .iter()
            .filter(|(a, until)| *until > now && self.agents.contains_key(a))
            .map(|&(a, until)| (a, until))
            .collect();
        self.calls.insert(
            call,
            Call {
                id: call,
                queue,
                priority: priority.saturating_add(weight),
                seq,
                first_enqueued: now.saturating_sub(waited),
                entered: now,
                tier: 0,
                state: CallState::Waiting,
                preferred,
                timers: Vec::new(),
            },
        );
        self.enter_queue(now, call, queue);
        Ok(())
    }

    /// The agent's phone answered the offer.
    pub fn answer(&mut self, now: Millis, call: CallId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        let CallState::Offered { agent } = c.state else {
            return Err(AcdError::WrongCallState {
                call,
                action: "answer",
            });
        };
        let (queue, waited, in_queue) = (c.queue, now - c.first_enqueued, now - c.entered);
        self.disarm_all(call);
        let q = &mut self.queues[queue.0 as usize];
        q.offered -= 1;
        let sl = q.cfg.sl_threshold;
        let b = q.bucket(now);
        b.answered += 1;
        b.answered_wait += in_queue;
        if in_queue <= sl {
            b.answered_in_sl += 1;
        }
        q.model.wait_ended(in_queue as f64 / 1000.0, false);
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::InService { agent };
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.missed_in_row = 0;
        }
        self.set_state(now, agent, AgentState::Busy { call });
        self.actions.push_back(Action::CallLeft {
            call,
            queue,
            outcome: Outcome::Answered { agent },
            waited,
        });
        Ok(())
    }

    /// The agent declined or its phone was busy: counts as a missed offer.
    pub fn reject(&mut self, now: Millis, call: CallId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        if !matches!(c.state, CallState::Offered { .. }) {
            return Err(AcdError::WrongCallState {
                call,
                action: "reject",
            });
        }
        self.missed_offer(now, call, false);
        Ok(())
    }

    /// The caller hung up: an abandon while queued or ringing (ringing is revoked), the
    /// end of the conversation while in service.
    pub fn hangup(&mut self, now: Millis, call: CallId) -> Result<(), AcdError> {
        self.leave(now, call, Outcome::Abandoned)
    }

    /// The caller chose another way out while waiting or ringing (voicemail, callback):
    /// it leaves the queue as Withdrawn, not counted as an abandon.
    pub fn withdraw(&mut self, now: Millis, call: CallId) -> Result<(), AcdError> {
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        if let CallState::InService { .. } = c.state {
            return Err(AcdError::WrongCallState {
                call,
                action: "withdraw",
            });
        }
        self.leave(now, call, Outcome::Withdrawn)
    }

    fn leave(&mut self, now: Millis, call: CallId, outcome: Outcome) -> Result<(), AcdError> {
        let now = self.tick(now);
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        let queue = c.queue;
        match c.state {
            CallState::InService { .. } => return self.end_call(now, call),
            CallState::Offered { agent } => {
                self.disarm(call, Timer::OfferDeadline(call));
                self.queues[queue.0 as usize].offered -= 1;
                self.actions.push_back(Action::RevokeOffer { call, agent });
                self.release_agent(now, agent, false);
            }
            CallState::Waiting | CallState::Targeted => self.leave_waiting(call),
        }
        self.finish(now, call, outcome);
        Ok(())
    }

    /// The conversation ended (either side hung up): the agent goes to wrap-up.
    pub fn end_call(&mut self, now: Millis, call: CallId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        let CallState::InService { agent } = c.state else {
            return Err(AcdError::WrongCallState {
                call,
                action: "end",
            });
        };
        let queue = c.queue;
        self.calls.remove(&call);
        let wrap = self.queues[queue.0 as usize].cfg.wrap_up;
        let talk = self.agents.get(&agent).map(|a| now - a.since).unwrap_or(0);
        let q = &mut self.queues[queue.0 as usize];
        let working = q.members_in[StateKind::Ready as usize]
            + q.members_in[StateKind::Offered as usize]
            + q.members_in[StateKind::Busy as usize]
            + q.members_in[StateKind::WrapUp as usize];
        q.model.handled((talk + wrap) as f64 / 1000.0, working);
        let b = q.bucket(now);
        b.handled += 1;
        b.handle_time += talk + wrap;
        if let Some(a) = self.agents.get_mut(&agent) {
            a.handled += 1;
        }
        if wrap == 0 {
            self.after_work(now, agent);
        } else {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.wrap_extended = false;
            }
            let until = now + wrap;
            self.timers.insert((until, Timer::WrapUpEnd(agent)));
            self.set_state(now, agent, AgentState::WrapUp { until });
        }
        Ok(())
    }

    /// The agent's after-call work is done early: what its end would do happens now (a Not
    /// ready asked for during the call applies, else Ready).
    pub fn end_wrap_up(&mut self, now: Millis, agent: AgentId) -> Result<(), AcdError> {
        let now = self.tick(now);
        let until = self.wrap_up_end(agent, "end the wrap-up")?;
        self.timers.remove(&(until, Timer::WrapUpEnd(agent)));
        self.after_work(now, agent);
        Ok(())
    }

    /// The agent needs more after-call work: its wrap-up lasts `extra` longer. Once per
    /// wrap-up (the next one may be extended again); only while in wrap-up. Returns the new
    /// end. (Ending a wrap-up early is [`Acd::end_wrap_up`].)
    pub fn extend_wrap_up(
        &mut self,
        now: Millis,
        agent: AgentId,
        extra: Millis,
    ) -> Result<Millis, AcdError> {
        let now = self.tick(now);
        let until = self.wrap_up_end(agent, "extend the wrap-up")?;
        let a = self
            .agents
            .get_mut(&agent)
            .ok_or(AcdError::UnknownAgent(agent))?;
        if a.wrap_extended {
            return Err(AcdError::IllegalTransition {
                agent,
                from: StateKind::WrapUp,
                action: "extend the wrap-up a second time",
            });
        }
        a.wrap_extended = true;
        let later = until.max(now) + extra;
        a.state = AgentState::WrapUp { until: later };
        self.timers.remove(&(until, Timer::WrapUpEnd(agent)));
        self.timers.insert((later, Timer::WrapUpEnd(agent)));
        // the same state with a new end: listeners see it (time in state is unchanged)
        self.actions.push_back(Action::AgentChanged {
            agent,
            state: AgentState::WrapUp { until: later },
        });
        Ok(later)
    }

    /// When the agent's wrap-up ends; refused when it is not in wrap-up.
    fn wrap_up_end(&self, agent: AgentId, action: &'static str) -> Result<Millis, AcdError> {
        let a = self
            .agents
            .get(&agent)
            .ok_or(AcdError::UnknownAgent(agent))?;
        match a.state {
            AgentState::WrapUp { until } => Ok(until),
            s => Err(AcdError::IllegalTransition {
                agent,
                from: s.kind(),
                action,
            }),
        }
    }

    // ---- time ----

    /// The earliest time the ACD has something to do, if any.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Run everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        let now = self.tick(now);
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, timer));
            match timer {
                Timer::WrapUpEnd(agent) => self.after_work(t, agent),
                Timer::OfferDeadline(call) => {
                    self.forget_timer(call, (t, timer));
                    self.missed_offer(t, call, true);
                }
                Timer::NextTier(call) => {
                    self.forget_timer(call, (t, timer));
                    self.next_tier(t, call);
                }
                Timer::PreferredEnd(call) => {
                    self.forget_timer(call, (t, timer));
                    self.preferred_end(t, call);
                }
                Timer::MaxWait(call) => {
                    self.forget_timer(call, (t, timer));
                    self.max_wait(t, call);
                }
            }
        }
    }

    /// The next decision or event, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---- queries ----

    /// The agent in conversation with `call`, if it was answered and has not ended.
    pub fn serving_agent(&self, call: CallId) -> Option<AgentId> {
        match self.calls.get(&call)?.state {
            CallState::InService { agent } => Some(agent),
            _ => None,
        }
    }

    pub fn agent_state(&self, agent: AgentId) -> Option<AgentState> {
        self.agents.get(&agent).map(|a| a.state)
    }

    pub fn agent_stats(&self, now: Millis, agent: AgentId) -> Option<AgentStats> {
        let now = now.max(self.now);
        let a = self.agents.get(&agent)?;
        let mut time_in = a.time_in;
        time_in[a.state.kind() as usize] += now.saturating_sub(a.since);
        let work = time_in[StateKind::Busy as usize] + time_in[StateKind::WrapUp as usize];
        Some(AgentStats {
            state: a.state,
            handled: a.handled,
            occupancy: a.occupancy_ppm(now) as f64 / 1e6,
            aht: (a.handled > 0).then(|| work as f64 / a.handled as f64 / 1000.0),
            time_in,
        })
    }

    pub fn queue_stats(&self, now: Millis, queue: QueueId) -> Option<QueueStats> {
        let now = now.max(self.now);
        let q = self.queues.get(queue.0 as usize)?;
        let w = q.window(now);
        let ended = w.answered + w.abandoned;
        Some(QueueStats {
            waiting: q.by_age.len(),
            ringing: q.offered,
            oldest_wait: q
                .by_age
                .first()
                .map(|&(t, _)| now.saturating_sub(t))
                .unwrap_or(0),
            agents: q.members_in,
            entered: w.entered,
            answered: w.answered,
            abandoned: w.abandoned,
            service_level: (ended > 0).then(|| f64::from(w.answered_in_sl) / f64::from(ended)),
            asa: (w.answered > 0).then(|| w.answered_wait as f64 / f64::from(w.answered) / 1000.0),
            abandon_rate: (ended > 0).then(|| f64::from(w.abandoned) / f64::from(ended)),
            aht: (w.handled > 0).then(|| w.handle_time as f64 / f64::from(w.handled) / 1000.0),
        })
    }

    /// 1-based position of a waiting call in its queue (calls ahead of it, plus one).
    /// Costs O(calls in the queue): for announcements, not for routing.
    pub fn position(&self, call: CallId) -> Option<usize> {
        let c = self.calls.get(&call)?;
        if !matches!(c.state, CallState::Waiting | CallState::Targeted) {
            return None;
        }
        let q = &self.queues[c.queue.0 as usize];
        let key = (c.key(), call);
        let ahead: usize = q.waiting.iter().map(|set| set.range(..key).count()).sum();
        let targeted_ahead = self
            .calls
            .values()
            .filter(|o| {
                o.queue == c.queue && o.state == CallState::Targeted && (o.key(), o.id) < key
            })
            .count();
        Some(ahead + targeted_ahead + 1)
    }

    /// Estimated wait, seconds, for a waiting call (see [`crate::ewt`] for the model): 0
    /// when a Ready operator will take it now. None when the call is not waiting (it is
    /// ringing an operator: being connected, or gone) or when nobody works its queue
    /// (every member logged out or not ready: the wait is unknown, not short).
    pub fn estimated_wait(&self, now: Millis, call: CallId) -> Option<f64> {
        let pos = self.position(call)?;
        let c = self.calls.get(&call)?;
        self.estimate(now, c.queue, pos)
    }

    /// Estimated wait, seconds, for a call that would join `queue` now.
    pub fn queue_estimated_wait(&self, now: Millis, queue: QueueId) -> Option<f64> {
        let q = self.queues.get(queue.0 as usize)?;
        self.estimate(now, queue, q.by_age.len() + 1)
    }

    fn estimate(&self, _now: Millis, queue: QueueId, pos: usize) -> Option<f64> {
        let q = &self.queues[queue.0 as usize];
        let free = q.members_in[StateKind::Ready as usize] as usize;
        // operators in wrap-up or on a call will take this queue's calls again
        let working = q.members_in[StateKind::Ready as usize]
            + q.members_in[StateKind::Offered as usize]
            + q.members_in[StateKind::Busy as usize]
            + q.members_in[StateKind::WrapUp as usize];
        if working == 0 {
            return None;
        }
        if free >= pos {
            return Some(0.0);
        }
        // the free operators take the first calls; the rest wait for the line to move
        q.model.estimate(pos - 1 - free, working)
    }

    /// The Ready agents of a queue in the order its strategy would pick them (for the
    /// supervisor's view and for tests; O(agents) — not used by routing). Weighted random
    /// has no order: its agents come by level, then in index order.
    pub fn ready_order(&self, queue: QueueId) -> Option<Vec<AgentId>> {
        let q = self.queues.get(queue.0 as usize)?;
        let mut keyed: Vec<((u64, u64), AgentId)> = Vec::new();
        for index in &q.ready {
            match index {
                ReadyIndex::Ordered(set) => keyed.extend(set.iter().copied()),
                ReadyIndex::Weighted { by_level, .. } => {
                    for (level, bucket) in by_level.iter().enumerate().rev() {
                        keyed.extend(
                            bucket
                                .iter()
                                .map(|&a| ((u64::from(MAX_LEVEL) - level as u64, 0), a)),
                        );
                    }
                }
            }
        }
        keyed.sort();
        Some(keyed.into_iter().map(|(_, a)| a).collect())
    }

    pub fn waiting_calls(&self) -> usize {
        self.queues.iter().map(|q| q.by_age.len()).sum()
    }

    pub fn logged_in_agents(&self) -> usize {
        self.agents.len()
    }

    // ---- internals ----

    fn tick(&mut self, now: Millis) -> Millis {
        self.now = self.now.max(now);
        self.now
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn arm(&mut self, call: CallId, key: TimerKey) {
        self.timers.insert(key);
        if let Some(c) = self.calls.get_mut(&call) {
            c.timers.push(key);
        }
    }

    fn forget_timer(&mut self, call: CallId, key: TimerKey) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.timers.retain(|k| k != &key);
        }
    }

    fn disarm(&mut self, call: CallId, timer: Timer) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.timers.retain(|k| {
                if k.1 == timer {
                    self.timers.remove(k);
                    false
                } else {
                    true
                }
            });
        }
    }

    fn disarm_all(&mut self, call: CallId) {
        if let Some(c) = self.calls.get_mut(&call) {
            for k in c.timers.drain(..) {
                self.timers.remove(&k);
            }
        }
    }

    /// Put a call into `queue` (new or moved): count it, arm its timers, route it.
    fn enter_queue(&mut self, now: Millis, call: CallId, queue: QueueId) {
        let q = &mut self.queues[queue.0 as usize];
        q.bucket(now).entered += 1;
        let (max_wait, first_step) = (q.cfg.max_wait, q.cfg.expansions.first().map(|&(t, _)| t));
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.queue = queue;
        c.entered = now;
        c.tier = 0;
        let key = (c.first_enqueued, c.seq);
        q.by_age.insert(key);
        let preferred_end = c.preferred.iter().map(|&(_, until)| until).min();
        if let Some(mw) = max_wait {
            self.arm(call, (now + mw, Timer::MaxWait(call)));
        }
        if let Some(step) = first_step {
            self.arm(call, (now + step, Timer::NextTier(call)));
        }
        match preferred_end {
            Some(until) => {
                self.set_call_state(call, CallState::Targeted);
                self.arm(call, (until, Timer::PreferredEnd(call)));
                self.route_targeted(now, call);
            }
            None => {
                self.set_call_state(call, CallState::Waiting);
                self.route_call(now, call);
            }
        }
    }

    fn set_call_state(&mut self, call: CallId, state: CallState) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = state;
        let entry = (c.key(), call);
        match state {
            CallState::Waiting => {
                self.queues[c.queue.0 as usize].waiting[c.tier as usize].insert(entry);
            }
            CallState::Targeted => {
                for &(a, _) in &c.preferred {
                    if let Some(agent) = self.agents.get_mut(&a) {
                        agent.targeted.insert(entry);
                    }
                }
            }
            _ => {}
        }
    }

    /// Take a waiting or targeted call out of the structures that hold it.
    fn leave_waiting(&mut self, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let entry = (c.key(), call);
        let q = &mut self.queues[c.queue.0 as usize];
        match c.state {
            CallState::Waiting => {
                q.waiting[c.tier as usize].remove(&entry);
            }
            CallState::Targeted => {
                for &(a, _) in &c.preferred {
                    if let Some(agent) = self.agents.get_mut(&a) {
                        agent.targeted.remove(&entry);
                    }
                }
            }
            _ => return,
        }
        q.by_age.remove(&(c.first_enqueued, c.seq));
    }

    /// A Waiting call looks for the best Ready agent of its tier.
    fn route_call(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let (queue, tier) = (c.queue.0 as usize, c.tier as usize);
        let random = match self.queues[queue].cfg.strategy {
            Strategy::WeightedRandom => self.next_random(),
            _ => 0,
        };
        if let Some(agent) = pick_across(&self.queues[queue].ready[..=tier], random) {
            self.offer(now, call, agent);
        }
    }

    /// A Targeted call looks for a Ready preferred agent, in the order they were given.
    fn route_targeted(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let ready = c.preferred.iter().map(|&(a, _)| a).find(|a| {
            self.agents
                .get(a)
                .is_some_and(|x| x.state == AgentState::Ready)
        });
        // (Expired windows are dropped by the PreferredEnd timer before anything else runs.)
        if let Some(agent) = ready {
            self.offer(now, call, agent);
        }
    }

    fn offer(&mut self, now: Millis, call: CallId, agent: AgentId) {
        self.leave_waiting(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let queue = c.queue;
        c.state = CallState::Offered { agent };
        let q = &mut self.queues[queue.0 as usize];
        q.offered += 1;
        q.rr_counter += 1;
        let rr = q.rr_counter;
        let deadline = now + q.cfg.offer_timeout;
        if let Some(a) = self.agents.get_mut(&agent) {
            if let Some(m) = a.memberships.iter_mut().find(|m| m.queue == queue) {
                m.last_rr = rr;
            }
        }
        self.arm(call, (deadline, Timer::OfferDeadline(call)));
        self.set_state(now, agent, AgentState::Offered { call, deadline });
        self.actions.push_back(Action::Offer {
            call,
            agent,
            queue,
            deadline,
        });
    }

    fn missed_offer(&mut self, now: Millis, call: CallId, timed_out: bool) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let CallState::Offered { agent } = c.state else {
            return;
        };
        let queue = c.queue;
        // A preferred agent that let it ring is no longer waited for.
        c.preferred.retain(|&(a, _)| a != agent);
        self.disarm(call, Timer::OfferDeadline(call));
        self.queues[queue.0 as usize].offered -= 1;
        if timed_out {
            self.actions.push_back(Action::RevokeOffer { call, agent });
        }
        // Back to its place (same priority and sequence), routed before the agent returns
        // so that another free agent gets it first.
        self.requeue(now, call);
        self.release_agent(now, agent, true);
    }

    /// Put a call that is in no structure back where it belongs: reserved for its
    /// preferred agents while any is left, else waiting at its tier; then route it.
    fn requeue(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let agents = &self.agents;
        c.preferred.retain(|(a, _)| agents.contains_key(a));
        if c.preferred.is_empty() {
            self.disarm(call, Timer::PreferredEnd(call));
            self.set_call_state(call, CallState::Waiting);
            self.add_by_age(call);
            self.route_call(now, call);
        } else {
            self.set_call_state(call, CallState::Targeted);
            self.add_by_age(call);
            self.route_targeted(now, call);
        }
    }

    fn add_by_age(&mut self, call: CallId) {
        if let Some(c) = self.calls.get(&call) {
            self.queues[c.queue.0 as usize]
                .by_age
                .insert((c.first_enqueued, c.seq));
        }
    }

    /// An agent whose offer ended without a conversation.
    fn release_agent(&mut self, now: Millis, agent: AgentId, missed: bool) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        let queue_limit = match a.state {
            AgentState::Offered { call, .. } => self
                .calls
                .get(&call)
                .map(|c| {
                    self.queues[c.queue.0 as usize]
                        .cfg
                        .missed_offers_to_not_ready
                })
                .unwrap_or(0),
            _ => 0,
        };
        if missed {
            a.missed_in_row += 1;
        }
        if let Some(reason) = a.pending.take() {
            self.set_state(now, agent, AgentState::NotReady(reason));
        } else if missed && queue_limit > 0 && a.missed_in_row >= queue_limit {
            self.set_state(now, agent, AgentState::NotReady(Reason::MISSED_OFFER));
        } else {
            self.become_ready(now, agent);
        }
    }

    fn after_work(&mut self, now: Millis, agent: AgentId) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        if let Some(reason) = a.pending.take() {
            self.set_state(now, agent, AgentState::NotReady(reason));
        } else {
            self.become_ready(now, agent);
        }
    }

    /// The agent becomes Ready: it takes the most urgent call it may serve, or joins the
    /// Ready indexes of its queues.
    fn become_ready(&mut self, now: Millis, agent: AgentId) {
        // Look for a call first: when one is found (the busy case) the agent goes straight
        // to Offered and never enters and leaves the Ready indexes.
        let Some(a) = self.agents.get(&agent) else {
            return;
        };
        if let Some(&(_, call)) = a.targeted.first() {
            self.offer(now, call, agent);
            return;
        }
        // Across its queues: highest priority, then the call nearest to breaching its
        // queue's service level, then arrival.
        // (priority, service-level breach time, arrival) of the best candidate so far.
        type Urgency = (Reverse<i32>, Millis, u64);
        let mut best: Option<(Urgency, CallId)> = None;
        for m in &a.memberships {
            let q = &self.queues[m.queue.0 as usize];
            for set in &q.waiting[m.min_tier as usize..] {
                if let Some(&((prio, seq, entered), call)) = set.first() {
                    let key = (prio, entered + q.cfg.sl_threshold, seq);
                    if best.is_none_or(|(b, _)| key < b) {
                        best = Some((key, call));
                    }
                }
            }
        }
        match best {
            Some((_, call)) => self.offer(now, call, agent),
            None => {
                self.set_state(now, agent, AgentState::Ready);
                self.index_ready(now, agent);
            }
        }
    }

    /// Change an agent's state, keeping counters and accounting right and taking it out of
    /// the Ready indexes (a Ready agent is indexed by [`Acd::index_ready`] once it found no call).
    fn set_state(&mut self, now: Millis, agent: AgentId, state: AgentState) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        let old = a.state;
        a.time_in[old.kind() as usize] += now.saturating_sub(a.since);
        a.since = now;
        a.state = state;
        for m in &mut a.memberships {
            let q = &mut self.queues[m.queue.0 as usize];
            q.members_in[old.kind() as usize] -= 1;
            q.members_in[state.kind() as usize] += 1;
            if let Some(key) = m.ready_key.take() {
                q.ready[m.min_tier as usize].remove(key, agent);
            }
        }
        self.actions
            .push_back(Action::AgentChanged { agent, state });
    }

    /// Put a Ready agent who found no call into the Ready indexes of its queues.
    fn index_ready(&mut self, now: Millis, agent: AgentId) {
        let Some(a) = self.agents.get_mut(&agent) else {
            return;
        };
        let occupancy = a.occupancy_ppm(now);
        let handled = a.handled;
        for m in &mut a.memberships {
            let q = &mut self.queues[m.queue.0 as usize];
            let key = match q.cfg.strategy {
                Strategy::LongestIdle => (now, 0),
                Strategy::LeastOccupied => (occupancy, now),
                Strategy::MostSkilled => (u64::from(MAX_LEVEL - m.rank_level), now),
                Strategy::RoundRobin => (m.last_rr, now),
                Strategy::FewestCalls => (handled, now),
                Strategy::WeightedRandom => (0, 0),
            };
            m.ready_key = Some(key);
            q.ready[m.min_tier as usize].insert(key, agent, m.rank_level);
        }
    }

    fn next_tier(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let q = &self.queues[c.queue.0 as usize];
        let next = c.tier as usize + 1;
        if next >= q.tiers() {
            return;
        }
        let following = q.cfg.expansions.get(next).map(|&(t, _)| c.entered + t);
        let state = c.state;
        if state == CallState::Waiting {
            self.leave_waiting(call);
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.tier = next as u8;
        }
        if let Some(at) = following {
            self.arm(call, (at.max(now), Timer::NextTier(call)));
        }
        if state == CallState::Waiting {
            self.requeue(now, call);
        }
    }

    /// The earliest preferred agent's window closed: drop every expired one; when none is
    /// left the call is open to every eligible agent.
    fn preferred_end(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let targeted = c.state == CallState::Targeted;
        if targeted {
            self.leave_waiting(call);
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.preferred.retain(|&(_, until)| until > now);
        if let Some(at) = c.preferred.iter().map(|&(_, until)| until).min() {
            self.arm(call, (at, Timer::PreferredEnd(call)));
        }
        if targeted {
            self.requeue(now, call);
        }
    }

    /// Stop waiting for one preferred agent (it logged out).
    fn drop_preference(&mut self, now: Millis, call: CallId, agent: AgentId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Targeted {
            return;
        }
        self.leave_waiting(call);
        if let Some(c) = self.calls.get_mut(&call) {
            c.preferred.retain(|&(a, _)| a != agent);
        }
        self.requeue(now, call);
    }

    fn max_wait(&mut self, now: Millis, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if !matches!(c.state, CallState::Waiting | CallState::Targeted) {
            return;
        }
        let from = c.queue;
        self.leave_waiting(call);
        match self.queues[from.0 as usize].cfg.overflow {
            Overflow::Queue(to) => {
                self.disarm_all(call);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.preferred.clear();
                }
                self.actions.push_back(Action::Moved { call, from, to });
                self.enter_queue(now, call, to);
            }
            Overflow::External(code) => self.finish(now, call, Outcome::Overflowed(code)),
            Overflow::None => self.finish(now, call, Outcome::TimedOut),
        }
    }

    /// Remove a call that left for good (not answered) and report it.
    fn finish(&mut self, now: Millis, call: CallId, outcome: Outcome) {
        self.disarm_all(call);
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        let q = &mut self.queues[c.queue.0 as usize];
        // every wait that ended was time at risk; only an abandon is impatience (a caller
        // who took the voicemail or was moved on left for another reason)
        let at_risk = if matches!(
            c.state,
            CallState::Waiting | CallState::Targeted | CallState::Offered { .. }
        ) {
            now - c.entered
        } else {
            0
        };
        q.model
            .wait_ended(at_risk as f64 / 1000.0, outcome == Outcome::Abandoned);
        if outcome == Outcome::Abandoned {
            let b = q.bucket(now);
            b.abandoned += 1;
            b.abandoned_wait += now - c.entered;
        }
        self.actions.push_back(Action::CallLeft {
            call,
            queue: c.queue,
            outcome,
            waited: now - c.first_enqueued,
        });
    }

    /// Check every structural invariant; for tests (O(everything)).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut offered_by_agent: HashMap<AgentId, CallId> = HashMap::new();
        for c in self.calls.values() {
            let q = &self.queues[c.queue.0 as usize];
            let entry = (c.key(), c.id);
            let in_sets = q.waiting.iter().filter(|s| s.contains(&entry)).count();
            let aged = q.by_age.contains(&(c.first_enqueued, c.seq));
            match c.state {
                CallState::Waiting => {
                    if in_sets != 1 || !q.waiting[c.tier as usize].contains(&entry) || !aged {
                        return Err(format!("waiting call {:?} misplaced", c.id));
                    }
                    if q.ready[..=c.tier as usize]
                        .iter()
                        .any(|index| !index.is_empty())
                    {
                        return Err(format!(
                            "call {:?} waits while an eligible agent is Ready",
                            c.id
                        ));
                    }
                }
                CallState::Targeted => {
                    if in_sets != 0 || !aged || c.preferred.is_empty() {
                        return Err(format!("targeted call {:?} misplaced", c.id));
                    }
                    for (a, _) in &c.preferred {
                        let agent = self
                            .agents
                            .get(a)
                            .ok_or(format!("call {:?} targets a gone agent", c.id))?;
                        if !agent.targeted.contains(&entry) {
                            return Err(format!("call {:?} missing from {a:?}'s targeted", c.id));
                        }
                        if agent.state == AgentState::Ready {
                            return Err(format!(
                                "call {:?} waits while its preferred agent is Ready",
                                c.id
                            ));
                        }
                    }
                }
                CallState::Offered { agent } => {
                    if in_sets != 0 || aged {
                        return Err(format!("offered call {:?} still queued", c.id));
                    }
                    match self.agents.get(&agent).map(|a| a.state) {
                        Some(AgentState::Offered { call, deadline }) if call == c.id => {
                            if deadline < self.now {
                                return Err(format!("offer of {:?} outlived its deadline", c.id));
                            }
                        }
                        other => {
                            return Err(format!(
                                "call {:?} offered to {agent:?} in {other:?}",
                                c.id
                            ))
                        }
                    }
                    if offered_by_agent.insert(agent, c.id).is_some() {
                        return Err(format!("agent {agent:?} rings with two calls"));
                    }
                }
                CallState::InService { agent } => {
                    if in_sets != 0 || aged {
                        return Err(format!("call in service {:?} still queued", c.id));
                    }
                    if self.agents.get(&agent).map(|a| a.state)
                        != Some(AgentState::Busy { call: c.id })
                    {
                        return Err(format!(
                            "call {:?} in service but agent not Busy with it",
                            c.id
                        ));
                    }
                }
            }
        }
        for q in &self.queues {
            let queued: usize = q.waiting.iter().map(BTreeSet::len).sum::<usize>()
                + self
                    .calls
                    .values()
                    .filter(|c| c.queue == q.id && c.state == CallState::Targeted)
                    .count();
            if queued != q.by_age.len() {
                return Err(format!(
                    "queue {:?}: by_age {} vs queued {queued}",
                    q.id,
                    q.by_age.len()
                ));
            }
            let offered = self
                .calls
                .values()
                .filter(|c| c.queue == q.id && matches!(c.state, CallState::Offered { .. }))
                .count();
            if offered != q.offered {
                return Err(format!(
                    "queue {:?}: offered count {} vs {offered}",
                    q.id, q.offered
                ));
            }
            let mut counts = [0u32; STATE_KINDS];
            for a in self.agents.values() {
                if a.memberships.iter().any(|m| m.queue == q.id) {
                    counts[a.state.kind() as usize] += 1;
                }
            }
            if counts != q.members_in {
                return Err(format!(
                    "queue {:?}: member counts {:?} vs {counts:?}",
                    q.id, q.members_in
                ));
            }
            for index in &q.ready {
                for a in index.agents() {
                    if self.agents.get(&a).map(|x| x.state) != Some(AgentState::Ready) {
                        return Err(format!("queue {:?} indexes non-Ready agent {a:?}", q.id));
                    }
                }
            }
        }
        for a in self.agents.values() {
            for m in &a.memberships {
                let q = &self.queues[m.queue.0 as usize];
                for (t, index) in q.ready.iter().enumerate() {
                    let inside = m.ready_key.is_some_and(|k| index.contains(k, a.id));
                    let should = a.state == AgentState::Ready && t == m.min_tier as usize;
                    if inside != should {
                        return Err(format!(
                            "agent {:?} in queue {:?} tier {t}: indexed {inside}, should {should}",
                            a.id, q.id
                        ));
                    }
                }
            }
            if let AgentState::Offered { call, .. } = a.state {
                if offered_by_agent.get(&a.id) != Some(&call) {
                    return Err(format!(
                        "agent {:?} rings with {call:?} that is not offered to it",
                        a.id
                    ));
                }
            }
            if let AgentState::WrapUp { until } = a.state {
                if !self.timers.contains(&(until, Timer::WrapUpEnd(a.id))) || until < self.now {
                    return Err(format!("agent {:?} wrap-up has no live timer", a.id));
                }
            }
            for &(_, call) in &a.targeted {
                if self.calls.get(&call).map(|c| c.state) != Some(CallState::Targeted) {
                    return Err(format!("agent {:?} holds non-targeted call {call:?}", a.id));
                }
            }
        }
        if let Some(&(t, timer)) = self.timers.first() {
            if t < self.now {
                return Err(format!("timer {timer:?} at {t} is overdue at {}", self.now));
            }
        }
        Ok(())
    }
}

fn validate_queue(cfg: &QueueConfig, existing: usize) -> Result<(), AcdError> {
    if cfg.expansions.len() > 250 {
        return Err(AcdError::BadConfig(format!(
            "{}: at most 250 expansion steps",
            cfg.name
        )));
    }
    let mut last = 0;
    for (i, &(t, _)) in cfg.expansions.iter().enumerate() {
        if t <= last && i > 0 || t == 0 {
            return Err(AcdError::BadConfig(format!(
                "{}: expansion step {} at {t} ms must come after the previous one and after 0",
                cfg.name,
                i + 1
            )));
        }
        last = t;
    }
    if cfg.offer_timeout == 0 {
        return Err(AcdError::BadConfig(format!(
            "{}: offer timeout must be positive",
            cfg.name
        )));
    }
    if cfg.stats_window < BUCKETS as u64 {
        return Err(AcdError::BadConfig(format!(
            "{}: statistics window too short",
            cfg.name
        )));
    }
    if let Overflow::Queue(q) = cfg.overflow {
        if q.0 as usize >= existing {
            return Err(AcdError::BadConfig(format!(
                "{}: overflow target queue {} must be configured first",
                cfg.name, q.0
            )));
        }
        if cfg.max_wait.is_none() && cfg.max_length.is_none() {
            return Err(AcdError::BadConfig(format!(
                "{}: overflow needs a max wait or a max length",
                cfg.name
            )));
        }
    }
    Ok(())
}
