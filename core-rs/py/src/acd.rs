//! `ccorch._core.Acd` and the queueing math: type conversion and error mapping only.
//!
//! Actions cross as plain tuples (cheap to build, batched by `poll_actions`); the Python
//! face in `ccorch/acd/` turns them into typed objects where that helps.

use ccorch_acd::engine::{
    AcdError, Action, AgentId, AgentState, CallId, Millis, Outcome, Overflow, QueueConfig, QueueId,
    Reason, StateKind, Strategy,
};
use ccorch_acd::erlang::{self, MathError, StaffingTarget};
use ccorch_acd::skills::{parse, SkillTable};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

pyo3::import_exception!(ccorch.errors, UnknownEntity);
pyo3::import_exception!(ccorch.errors, IllegalTransition);
pyo3::import_exception!(ccorch.errors, QueueFull);
pyo3::import_exception!(ccorch.errors, AcdConfigError);
pyo3::import_exception!(ccorch.errors, QueueMathError);

fn acd_error(e: AcdError) -> PyErr {
    let msg = e.to_string();
    match e {
        AcdError::UnknownAgent(_) | AcdError::UnknownCall(_) | AcdError::UnknownQueue(_) => {
            UnknownEntity::new_err(msg)
        }
        AcdError::AlreadyLoggedIn(_)
        | AcdError::DuplicateCall(_)
        | AcdError::IllegalTransition { .. }
        | AcdError::WrongCallState { .. } => IllegalTransition::new_err(msg),
        AcdError::QueueFull { .. } => QueueFull::new_err(msg),
        AcdError::BadConfig(_) => AcdConfigError::new_err(msg),
    }
}

fn math_error(e: MathError) -> PyErr {
    QueueMathError::new_err(e.to_string())
}

fn strategy(name: &str) -> PyResult<Strategy> {
    Ok(match name {
        "longest_idle" => Strategy::LongestIdle,
        "least_occupied" => Strategy::LeastOccupied,
        "most_skilled" => Strategy::MostSkilled,
        "round_robin" => Strategy::RoundRobin,
        "fewest_calls" => Strategy::FewestCalls,
        "weighted_random" => Strategy::WeightedRandom,
        other => {
            return Err(AcdConfigError::new_err(format!(
                "unknown strategy {other:?}: expected longest_idle, least_occupied, most_skilled, \
                 round_robin, fewest_calls or weighted_random"
            )))
        }
    })
}

fn state_name(kind: StateKind) -> &'static str {
    match kind {
        StateKind::LoggedOut => "logged_out",
        StateKind::Ready => "ready",
        StateKind::NotReady => "not_ready",
        StateKind::Offered => "offered",
        StateKind::Busy => "busy",
        StateKind::WrapUp => "wrap_up",
    }
}

const STATE_NAMES: [&str; 6] = [
    "logged_out",
    "ready",
    "not_ready",
    "offered",
    "busy",
    "wrap_up",
];

/// (state, detail): the reason code, the call, or the wrap-up deadline.
fn state_tuple(s: AgentState) -> (&'static str, Option<u64>) {
    let detail = match s {
        AgentState::LoggedOut | AgentState::Ready => None,
        AgentState::NotReady(r) => Some(u64::from(r.0)),
        AgentState::Offered { call, .. } | AgentState::Busy { call } => Some(call.0),
        AgentState::WrapUp { until } => Some(until),
    };
    (state_name(s.kind()), detail)
}

fn action_tuple<'py>(py: Python<'py>, a: Action) -> PyResult<Bound<'py, PyTuple>> {
    Ok(match a {
        Action::Offer {
            call,
            agent,
            queue,
            deadline,
        } => ("offer", call.0, agent.0, queue.0, deadline).into_pyobject(py)?,
        Action::RevokeOffer { call, agent } => ("revoke", call.0, agent.0).into_pyobject(py)?,
        Action::Moved { call, from, to } => ("moved", call.0, from.0, to.0).into_pyobject(py)?,
        Action::CallLeft {
            call,
            queue,
            outcome,
            waited,
        } => {
            let (name, detail) = match outcome {
                Outcome::Answered { agent } => ("answered", Some(agent.0)),
                Outcome::Abandoned => ("abandoned", None),
                Outcome::Overflowed(code) => ("overflowed", Some(u64::from(code))),
                Outcome::TimedOut => ("timed_out", None),
                Outcome::Withdrawn => ("withdrawn", None),
            };
            ("left", call.0, queue.0, name, detail, waited).into_pyobject(py)?
        }
        Action::AgentChanged { agent, state } => {
            let (name, detail) = state_tuple(state);
            ("agent", agent.0, name, detail).into_pyobject(py)?
        }
    })
}

/// The skill-based ACD: a sans-IO state machine. Times are milliseconds on the caller's
/// monotonic clock; every method takes `now_ms` and nothing reads a clock inside.
#[pyclass(module = "ccorch._core", name = "Acd")]
pub struct PyAcd {
    acd: ccorch_acd::engine::Acd,
    skills: SkillTable,
}

#[pymethods]
impl PyAcd {
    #[new]
    #[pyo3(signature = (seed = 0))]
    fn new(seed: u64) -> Self {
        PyAcd {
            acd: ccorch_acd::engine::Acd::new(seed),
            skills: SkillTable::default(),
        }
    }

    /// Add a queue; returns its id. `skills` is a skill expression such as
    /// "billing>=5 & lang:ru"; `expansions` are (after_ms, expression) steps.
    #[pyo3(signature = (
        name, skills, *, strategy_name = "longest_idle", expansions = Vec::new(),
        priority_weight = 0, sl_threshold_ms = 20_000, wrap_up_ms = 10_000,
        offer_timeout_ms = 15_000, max_wait_ms = None, max_length = None,
        overflow_queue = None, overflow_external = None, missed_offers_to_not_ready = 1,
        stats_window_ms = 900_000, expected_handle_ms = 180_000,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn add_queue(
        &mut self,
        name: &str,
        skills: &str,
        strategy_name: &str,
        expansions: Vec<(Millis, String)>,
        priority_weight: i32,
        sl_threshold_ms: Millis,
        wrap_up_ms: Millis,
        offer_timeout_ms: Millis,
        max_wait_ms: Option<Millis>,
        max_length: Option<usize>,
        overflow_queue: Option<u32>,
        overflow_external: Option<u32>,
        missed_offers_to_not_ready: u32,
        stats_window_ms: Millis,
        expected_handle_ms: Millis,
    ) -> PyResult<u32> {
        let expr = |text: &str, skills: &mut SkillTable| {
            parse(text, skills).map_err(|e| {
                AcdConfigError::new_err(format!("{name}: skill expression {text:?} {e}"))
            })
        };
        // Parse into a scratch table first: a refused queue must not leave skills behind.
        let mut scratch = self.skills.clone();
        let mut cfg = QueueConfig::new(name, expr(skills, &mut scratch)?);
        for (after, text) in &expansions {
            cfg.expansions.push((*after, expr(text, &mut scratch)?));
        }
        cfg.strategy = strategy(strategy_name)?;
        cfg.priority_weight = priority_weight;
        cfg.sl_threshold = sl_threshold_ms;
        cfg.wrap_up = wrap_up_ms;
        cfg.offer_timeout = offer_timeout_ms;
        cfg.max_wait = max_wait_ms;
        cfg.max_length = max_length;
        cfg.overflow = match (overflow_queue, overflow_external) {
            (Some(_), Some(_)) => {
                return Err(AcdConfigError::new_err(format!(
                    "{name}: overflow to a queue or to an external target, not both"
                )))
            }
            (Some(q), None) => Overflow::Queue(QueueId(q)),
            (None, Some(code)) => Overflow::External(code),
            (None, None) => Overflow::None,
        };
        cfg.missed_offers_to_not_ready = missed_offers_to_not_ready;
        cfg.stats_window = stats_window_ms;
        cfg.expected_handle = expected_handle_ms;
        let id = self.acd.add_queue(cfg).map_err(acd_error)?;
        self.skills = scratch;
        Ok(id.0)
    }

    /// Log an agent in with (skill, level 1..10) pairs and the queues it chose.
    fn login(
        &mut self,
        now_ms: Millis,
        agent: u64,
        skills: Vec<(String, u8)>,
        queues: Vec<u32>,
    ) -> PyResult<()> {
        let mut levels = Vec::with_capacity(skills.len());
        for (name, level) in &skills {
            if !(1..=ccorch_acd::skills::MAX_LEVEL).contains(level) {
                return Err(AcdConfigError::new_err(format!(
                    "agent {agent}: skill {name:?} level {level}: expected 1 to 10"
                )));
            }
            levels.push((self.skills.intern(name), *level));
        }
        let queues: Vec<QueueId> = queues.into_iter().map(QueueId).collect();
        self.acd
            .login(now_ms, AgentId(agent), &levels, &queues)
            .map_err(acd_error)
    }

    fn set_ready(&mut self, now_ms: Millis, agent: u64) -> PyResult<()> {
        self.acd
            .set_ready(now_ms, AgentId(agent))
            .map_err(acd_error)
    }

    /// Reason codes 0–2 are the ACD's (login, missed offer, supervisor); others are yours.
    fn set_not_ready(&mut self, now_ms: Millis, agent: u64, reason: u16) -> PyResult<()> {
        self.acd
            .set_not_ready(now_ms, AgentId(agent), Reason(reason))
            .map_err(acd_error)
    }

    /// The after-call work is done: a pending Not ready applies, else Ready.
    fn end_wrap_up(&mut self, now_ms: Millis, agent: u64) -> PyResult<()> {
        self.acd
            .end_wrap_up(now_ms, AgentId(agent))
            .map_err(acd_error)
    }

    /// More after-call work: the wrap-up lasts `extra_ms` longer (once per wrap-up); the
    /// new end.
    fn extend_wrap_up(&mut self, now_ms: Millis, agent: u64, extra_ms: Millis) -> PyResult<Millis> {
        self.acd
            .extend_wrap_up(now_ms, AgentId(agent), extra_ms)
            .map_err(acd_error)
    }

    fn logout(&mut self, now_ms: Millis, agent: u64) -> PyResult<()> {
        self.acd.logout(now_ms, AgentId(agent)).map_err(acd_error)
    }

    /// Queue a call; `preferred` is a list of (agent, until_ms) served first, each alone
    /// until its time; `waited_ms`: how long the caller has waited already (a transfer
    /// back into a queue keeps its place and its wait).
    #[pyo3(signature = (now_ms, call, queue, priority = 0, preferred = Vec::new(), waited_ms = 0))]
    fn enqueue(
        &mut self,
        now_ms: Millis,
        call: u64,
        queue: u32,
        priority: i32,
        preferred: Vec<(u64, Millis)>,
        waited_ms: Millis,
    ) -> PyResult<()> {
        let preferred: Vec<(AgentId, Millis)> = preferred
            .into_iter()
            .map(|(a, t)| (AgentId(a), t))
            .collect();
        self.acd
            .enqueue_waited(
                now_ms,
                CallId(call),
                QueueId(queue),
                priority,
                &preferred,
                waited_ms,
            )
            .map_err(acd_error)
    }

    fn answer(&mut self, now_ms: Millis, call: u64) -> PyResult<()> {
        self.acd.answer(now_ms, CallId(call)).map_err(acd_error)
    }

    fn reject(&mut self, now_ms: Millis, call: u64) -> PyResult<()> {
        self.acd.reject(now_ms, CallId(call)).map_err(acd_error)
    }

    fn hangup(&mut self, now_ms: Millis, call: u64) -> PyResult<()> {
        self.acd.hangup(now_ms, CallId(call)).map_err(acd_error)
    }

    /// The caller took another option (voicemail, callback): leaves as "withdrawn".
    fn withdraw(&mut self, now_ms: Millis, call: u64) -> PyResult<()> {
        self.acd.withdraw(now_ms, CallId(call)).map_err(acd_error)
    }

    fn end_call(&mut self, now_ms: Millis, call: u64) -> PyResult<()> {
        self.acd.end_call(now_ms, CallId(call)).map_err(acd_error)
    }

    fn handle_timeout(&mut self, now_ms: Millis) {
        self.acd.handle_timeout(now_ms);
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.acd.next_timeout()
    }

    /// Every pending action, oldest first, as tuples:
    /// ("offer", call, agent, queue, deadline_ms), ("revoke", call, agent),
    /// ("moved", call, from_queue, to_queue),
    /// ("left", call, queue, outcome, agent_or_code_or_None, waited_ms),
    /// ("agent", agent, state, reason_or_call_or_until_or_None).
    fn poll_actions<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let mut out = Vec::new();
        while let Some(a) = self.acd.poll_action() {
            out.push(action_tuple(py, a)?);
        }
        Ok(out)
    }

    /// (state, detail) or None when the agent is not logged in.
    fn agent_state(&self, agent: u64) -> Option<(&'static str, Option<u64>)> {
        self.acd.agent_state(AgentId(agent)).map(state_tuple)
    }

    /// Ready agents of a queue in the order its strategy picks them.
    fn ready_order(&self, queue: u32) -> PyResult<Vec<u64>> {
        self.acd
            .ready_order(QueueId(queue))
            .map(|v| v.into_iter().map(|a| a.0).collect())
            .ok_or_else(|| UnknownEntity::new_err(format!("queue {queue} does not exist")))
    }

    fn serving_agent(&self, call: u64) -> Option<u64> {
        self.acd.serving_agent(CallId(call)).map(|a| a.0)
    }

    fn position(&self, call: u64) -> Option<usize> {
        self.acd.position(CallId(call))
    }

    fn estimated_wait(&self, now_ms: Millis, call: u64) -> Option<f64> {
        self.acd.estimated_wait(now_ms, CallId(call))
    }

    fn queue_estimated_wait(&self, now_ms: Millis, queue: u32) -> Option<f64> {
        self.acd.queue_estimated_wait(now_ms, QueueId(queue))
    }

    fn queue_stats<'py>(
        &self,
        py: Python<'py>,
        now_ms: Millis,
        queue: u32,
    ) -> PyResult<Bound<'py, PyDict>> {
        let s = self
            .acd
            .queue_stats(now_ms, QueueId(queue))
            .ok_or_else(|| UnknownEntity::new_err(format!("queue {queue} does not exist")))?;
        let d = PyDict::new(py);
        d.set_item("waiting", s.waiting)?;
        d.set_item("ringing", s.ringing)?;
        d.set_item("oldest_wait_ms", s.oldest_wait)?;
        let agents = PyDict::new(py);
        for (name, n) in STATE_NAMES.iter().zip(s.agents) {
            agents.set_item(*name, n)?;
        }
        d.set_item("agents", agents)?;
        d.set_item("entered", s.entered)?;
        d.set_item("answered", s.answered)?;
        d.set_item("abandoned", s.abandoned)?;
        d.set_item("service_level", s.service_level)?;
        d.set_item("asa_seconds", s.asa)?;
        d.set_item("abandon_rate", s.abandon_rate)?;
        d.set_item("aht_seconds", s.aht)?;
        Ok(d)
    }

    fn agent_stats<'py>(
        &self,
        py: Python<'py>,
        now_ms: Millis,
        agent: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let s = self
            .acd
            .agent_stats(now_ms, AgentId(agent))
            .ok_or_else(|| UnknownEntity::new_err(format!("agent {agent} is not logged in")))?;
        let d = PyDict::new(py);
        d.set_item("state", state_tuple(s.state))?;
        d.set_item("handled", s.handled)?;
        d.set_item("occupancy", s.occupancy)?;
        d.set_item("aht_seconds", s.aht)?;
        let time_in = PyDict::new(py);
        for (name, ms) in STATE_NAMES.iter().zip(s.time_in) {
            time_in.set_item(*name, ms)?;
        }
        d.set_item("time_in_ms", time_in)?;
        Ok(d)
    }

    /// None when every invariant holds, else what is broken (for tests; O(everything)).
    fn check_invariants(&self) -> Option<String> {
        self.acd.check_invariants().err()
    }

    #[getter]
    fn waiting_calls(&self) -> usize {
        self.acd.waiting_calls()
    }

    #[getter]
    fn logged_in_agents(&self) -> usize {
        self.acd.logged_in_agents()
    }
}

/// Erlang B blocking probability.
#[pyfunction]
pub fn erlang_b(agents: u32, traffic: f64) -> PyResult<f64> {
    erlang::erlang_b(agents, traffic).map_err(math_error)
}

/// Erlang C probability of waiting.
#[pyfunction]
pub fn erlang_c(agents: u32, traffic: f64) -> PyResult<f64> {
    erlang::erlang_c(agents, traffic).map_err(math_error)
}

/// Erlang C forecast: dict of p_wait, asa_seconds, service_level, occupancy.
#[pyfunction]
pub fn erlang_c_forecast<'py>(
    py: Python<'py>,
    agents: u32,
    traffic: f64,
    aht_seconds: f64,
    sl_seconds: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let f =
        erlang::erlang_c_forecast(agents, traffic, aht_seconds, sl_seconds).map_err(math_error)?;
    let d = PyDict::new(py);
    d.set_item("p_wait", f.p_wait)?;
    d.set_item("asa_seconds", f.asa)?;
    d.set_item("service_level", f.service_level)?;
    d.set_item("occupancy", f.occupancy)?;
    Ok(d)
}

/// Erlang A forecast: dict of p_wait, p_abandon, mean_wait_seconds, service_level, occupancy.
#[pyfunction]
pub fn erlang_a<'py>(
    py: Python<'py>,
    agents: u32,
    calls_per_hour: f64,
    aht_seconds: f64,
    patience_seconds: f64,
    sl_seconds: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let f = py
        .detach(|| {
            erlang::erlang_a(
                agents,
                calls_per_hour,
                aht_seconds,
                patience_seconds,
                sl_seconds,
            )
        })
        .map_err(math_error)?;
    let d = PyDict::new(py);
    d.set_item("p_wait", f.p_wait)?;
    d.set_item("p_abandon", f.p_abandon)?;
    d.set_item("mean_wait_seconds", f.mean_wait)?;
    d.set_item("service_level", f.service_level)?;
    d.set_item("occupancy", f.occupancy)?;
    Ok(d)
}

fn target(
    service_level: Option<f64>,
    within_seconds: Option<f64>,
    asa_seconds: Option<f64>,
    abandon_rate: Option<f64>,
) -> PyResult<StaffingTarget> {
    match (service_level, within_seconds, asa_seconds, abandon_rate) {
        (Some(fraction), Some(seconds), None, None) => Ok(StaffingTarget::ServiceLevel { fraction, seconds }),
        (None, None, Some(seconds), None) => Ok(StaffingTarget::Asa { seconds }),
        (None, None, None, Some(fraction)) => Ok(StaffingTarget::AbandonRate { fraction }),
        _ => Err(QueueMathError::new_err(
            "give exactly one target: service_level with within_seconds, or asa_seconds, or abandon_rate",
        )),
    }
}

/// Fewest agents meeting one target under Erlang C (no abandonment).
#[pyfunction]
#[pyo3(signature = (traffic, aht_seconds, *, service_level = None, within_seconds = None, asa_seconds = None))]
pub fn staffing_erlang_c(
    py: Python<'_>,
    traffic: f64,
    aht_seconds: f64,
    service_level: Option<f64>,
    within_seconds: Option<f64>,
    asa_seconds: Option<f64>,
) -> PyResult<u32> {
    let t = target(service_level, within_seconds, asa_seconds, None)?;
    py.detach(|| erlang::erlang_c_staffing(traffic, aht_seconds, t))
        .map_err(math_error)
}

/// Fewest agents meeting one target under Erlang A (callers abandon).
#[pyfunction]
#[pyo3(signature = (
    calls_per_hour, aht_seconds, patience_seconds, *, service_level = None,
    within_seconds = None, asa_seconds = None, abandon_rate = None,
))]
#[allow(clippy::too_many_arguments)] // keyword-only targets on the Python side
pub fn staffing_erlang_a(
    py: Python<'_>,
    calls_per_hour: f64,
    aht_seconds: f64,
    patience_seconds: f64,
    service_level: Option<f64>,
    within_seconds: Option<f64>,
    asa_seconds: Option<f64>,
    abandon_rate: Option<f64>,
) -> PyResult<u32> {
    let t = target(service_level, within_seconds, asa_seconds, abandon_rate)?;
    py.detach(|| erlang::erlang_a_staffing(calls_per_hour, aht_seconds, patience_seconds, t))
        .map_err(math_error)
}
