//! `ccorch._core.DialerPacer` and `simulate_campaign`: type conversion and error mapping.

use ccorch_dialer::dist::{Dist, ParamError};
use ccorch_dialer::pacer::{CampaignPacer, Event, Mode, Pacer, PacerConfig};
use ccorch_dialer::reference::{ErlangCPacer, VicidialAdaptive};
use ccorch_dialer::sim::{simulate, Scenario};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

pyo3::import_exception!(ccorch.errors, DialerParamError);

fn param_error(e: ParamError) -> PyErr {
    DialerParamError::new_err(e.to_string())
}

fn mode(name: &str, ratio: Option<f64>) -> PyResult<Mode> {
    Ok(match (name, ratio) {
        ("preview", None) => Mode::Preview,
        ("progressive", None) => Mode::Progressive,
        ("predictive", None) => Mode::Predictive,
        ("power", Some(ratio)) => Mode::Power { ratio },
        ("power", None) => return Err(DialerParamError::new_err("power mode needs a ratio")),
        (_, Some(_)) => {
            return Err(DialerParamError::new_err(format!(
                "mode {name:?} takes no ratio"
            )))
        }
        _ => {
            return Err(DialerParamError::new_err(format!(
                "unknown mode {name:?}: expected preview, progressive, power or predictive"
            )))
        }
    })
}

/// The campaign's pacer: feed it the campaign's events, ask it every ≤ 250 ms how many
/// numbers to dial. Times are Unix epoch milliseconds (wall clock): Ofcom's 24 hours are
/// counted per calendar day in the campaign's time zone (`utc_offset_minutes`).
#[pyclass(module = "ccorch._core", name = "DialerPacer")]
pub struct PyDialerPacer {
    pacer: CampaignPacer,
}

#[pymethods]
impl PyDialerPacer {
    #[new]
    #[pyo3(signature = (
        mode_name, *, ratio = None, max_abandon_rate = 0.03, aim_abandon_rate = 0.025,
        amd_false_positive_share = 0.02, prior_live_probability = 0.25,
        prior_ring_seconds = 10.0, prior_talk_seconds = 120.0, prior_wrap_seconds = 10.0,
        utc_offset_minutes = 0, warm_up_live = 0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode_name: &str,
        ratio: Option<f64>,
        max_abandon_rate: f64,
        aim_abandon_rate: f64,
        amd_false_positive_share: f64,
        prior_live_probability: f64,
        prior_ring_seconds: f64,
        prior_talk_seconds: f64,
        prior_wrap_seconds: f64,
        utc_offset_minutes: i32,
        warm_up_live: u64,
    ) -> PyResult<Self> {
        let mut cfg = PacerConfig::new(mode(mode_name, ratio)?);
        cfg.max_abandon_rate = max_abandon_rate;
        cfg.aim_abandon_rate = aim_abandon_rate;
        cfg.amd_false_positive_share = amd_false_positive_share;
        cfg.prior_live_probability = prior_live_probability;
        cfg.prior_ring_seconds = prior_ring_seconds;
        cfg.prior_talk_seconds = prior_talk_seconds;
        cfg.prior_wrap_seconds = prior_wrap_seconds;
        cfg.utc_offset_minutes = utc_offset_minutes;
        cfg.campaign_warm_up_live = warm_up_live;
        Ok(PyDialerPacer {
            pacer: CampaignPacer::new(cfg).map_err(param_error)?,
        })
    }

    /// One campaign event: agent_joined, agent_left, agent_ready, preview_request,
    /// talk_ended, agent_leaving (id = agent; leaving: after the call in progress);
    /// not_live_after_all (id = when the call was counted as a live answer, ms: the
    /// operator found a machine); call_placed, call_unanswered, call_abandoned (id = call);
    /// call_answered (id = call, human = detection's verdict); call_connected (id = call,
    /// agent = the operator).
    #[pyo3(signature = (now_ms, kind, id, *, agent = None, human = None))]
    fn handle(
        &mut self,
        now_ms: u64,
        kind: &str,
        id: u64,
        agent: Option<u64>,
        human: Option<bool>,
    ) -> PyResult<()> {
        let event = match (kind, agent, human) {
            ("agent_joined", None, None) => Event::AgentJoined(id),
            ("agent_left", None, None) => Event::AgentLeft(id),
            ("agent_ready", None, None) => Event::AgentReady(id),
            ("preview_request", None, None) => Event::PreviewRequest(id),
            ("talk_ended", None, None) => Event::TalkEnded(id),
            ("agent_leaving", None, None) => Event::AgentLeaving(id),
            ("not_live_after_all", None, None) => Event::NotLiveAfterAll { answered_at: id },
            ("call_placed", None, None) => Event::CallPlaced(id),
            ("call_unanswered", None, None) => Event::CallUnanswered(id),
            ("call_abandoned", None, None) => Event::CallAbandoned(id),
            ("call_answered", None, Some(human)) => Event::CallAnswered { call: id, human },
            ("call_connected", Some(agent), None) => Event::CallConnected { call: id, agent },
            _ => {
                return Err(DialerParamError::new_err(format!(
                    "event {kind:?} with agent={agent:?} human={human:?}: not a campaign event \
                     (call_answered takes human=, call_connected takes agent=, the others neither)"
                )))
            }
        };
        self.pacer.handle(now_ms, event);
        Ok(())
    }

    /// How many numbers to dial now.
    fn dials(&mut self, now_ms: u64) -> u32 {
        self.pacer.dials(now_ms)
    }

    /// Ofcom rate over the 24 hours ending now (detection false positives included).
    fn abandon_rate_24h(&self, now_ms: u64) -> Option<f64> {
        self.pacer.ledger().rate_24_hours(now_ms)
    }

    /// US TSR rate over the 30 days ending now.
    fn abandon_rate_30d(&self, now_ms: u64) -> Option<f64> {
        self.pacer.ledger().rate_30_days(now_ms)
    }
}

fn float(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<f64>> {
    d.get_item(key)?.map(|v| v.extract::<f64>()).transpose()
}

fn scenario_from(d: &Bound<'_, PyDict>) -> PyResult<Scenario> {
    const KNOWN: [&str; 20] = [
        "agents",
        "day_hours",
        "p_live",
        "p_machine",
        "p_busy",
        "ring_mean",
        "ring_sd",
        "no_answer_after",
        "talk_mean",
        "talk_sd",
        "talk_min",
        "talk_max",
        "wrap",
        "amd_detects_machine",
        "amd_false_positive",
        "connect_window",
        "detect_seconds",
        "machine_talk",
        "drift",
        "drift_every",
    ];
    for key in d.keys() {
        let key: String = key.extract()?;
        if !KNOWN.contains(&key.as_str()) {
            return Err(DialerParamError::new_err(format!(
                "unknown scenario key {key:?}: expected one of {}",
                KNOWN.join(", ")
            )));
        }
    }
    let p_live = float(d, "p_live")?.unwrap_or(0.25);
    let talk_mean = float(d, "talk_mean")?.unwrap_or(120.0);
    let mut s = Scenario::standard(p_live, talk_mean);
    if let Some(v) = d.get_item("agents")? {
        s.agents = v.extract()?;
    }
    s.day_hours = float(d, "day_hours")?.unwrap_or(s.day_hours);
    s.p_machine = float(d, "p_machine")?.unwrap_or(s.p_machine);
    s.p_busy = float(d, "p_busy")?.unwrap_or(s.p_busy);
    if float(d, "ring_mean")?.is_some() || float(d, "ring_sd")?.is_some() {
        s.ring = Dist::LogNormal {
            mean: float(d, "ring_mean")?.unwrap_or(9.0),
            sd: float(d, "ring_sd")?.unwrap_or(5.0),
        };
    }
    s.no_answer_after = float(d, "no_answer_after")?.unwrap_or(s.no_answer_after);
    if let Some(sd) = float(d, "talk_sd")? {
        s.talk = Dist::LogNormal {
            mean: talk_mean,
            sd,
        };
    }
    // A uniform talk time (e.g. a bench's phones drawing it so), instead of log-normal.
    match (float(d, "talk_min")?, float(d, "talk_max")?) {
        (Some(lo), Some(hi)) => s.talk = Dist::Uniform { lo, hi },
        (None, None) => {}
        _ => {
            return Err(DialerParamError::new_err(
                "talk_min and talk_max go together".to_string(),
            ))
        }
    }
    if let Some(w) = float(d, "wrap")? {
        s.wrap = Dist::Constant(w);
    }
    s.amd_detects_machine = float(d, "amd_detects_machine")?.unwrap_or(s.amd_detects_machine);
    s.amd_false_positive = float(d, "amd_false_positive")?.unwrap_or(s.amd_false_positive);
    s.connect_window = float(d, "connect_window")?.unwrap_or(s.connect_window);
    s.detect_seconds = float(d, "detect_seconds")?.unwrap_or(s.detect_seconds);
    s.machine_talk = float(d, "machine_talk")?.unwrap_or(s.machine_talk);
    if let Some(v) = d.get_item("drift")? {
        s.drift = v.extract()?;
    }
    s.drift_every = float(d, "drift_every")?.unwrap_or(s.drift_every);
    s.validate().map_err(param_error)?;
    Ok(s)
}

/// Simulate `days` campaign days of `scenario` (a dict; see `ccorch.dialer`) under a
/// pacer ("preview" is not simulated; "progressive", "predictive", "power:<ratio>",
/// "erlang:<aim>" (the Erlang C reference), "vicidial"), reproducibly from `seed`;
/// `warm_up_live`: the campaign's live answers before power or predictive pacing, as the
/// campaign manager sets it. Returns totals and per-day figures.
#[pyfunction]
#[pyo3(signature = (scenario, pacer, seed = 1, days = 1, *, warm_up_live = 0))]
pub fn simulate_campaign<'py>(
    py: Python<'py>,
    scenario: &Bound<'py, PyDict>,
    pacer: &str,
    seed: u64,
    days: u32,
    warm_up_live: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let s = scenario_from(scenario)?;
    let share = s.amd_false_positive_share();
    let config = |m: Mode| {
        let mut c = PacerConfig::new(m);
        c.amd_false_positive_share = share;
        c.campaign_warm_up_live = warm_up_live;
        c
    };
    let mut boxed: Box<dyn Pacer + Send> = match pacer.split_once(':') {
        Some(("power", ratio)) => {
            let ratio: f64 = ratio.parse().map_err(|_| {
                DialerParamError::new_err(format!("power ratio {ratio:?} is not a number"))
            })?;
            Box::new(CampaignPacer::new(config(Mode::Power { ratio })).map_err(param_error)?)
        }
        Some(("erlang", aim)) => {
            let aim: f64 = aim
                .parse()
                .ok()
                .filter(|a| (0.0..0.5).contains(a) && *a > 0.0)
                .ok_or_else(|| {
                    DialerParamError::new_err(format!("Erlang C aim {aim:?}: a share in (0, 0.5)"))
                })?;
            Box::new(ErlangCPacer::new(aim, s.connect_window, share))
        }
        None if pacer == "progressive" => {
            Box::new(CampaignPacer::new(config(Mode::Progressive)).map_err(param_error)?)
        }
        None if pacer == "predictive" => {
            Box::new(CampaignPacer::new(config(Mode::Predictive)).map_err(param_error)?)
        }
        None if pacer == "vicidial" => Box::new(VicidialAdaptive::new(share)),
        _ => {
            return Err(DialerParamError::new_err(format!(
            "unknown pacer {pacer:?}: expected progressive, predictive, power:<ratio>, erlang:<aim> or vicidial"
        )))
        }
    };
    let report = py
        .detach(|| simulate(&s, boxed.as_mut(), seed, days))
        .map_err(param_error)?;
    let out = PyDict::new(py);
    out.set_item("occupancy", report.occupancy())?;
    out.set_item("abandon_rate", report.abandon_rate())?;
    out.set_item(
        "abandon_rate_with_false_positives",
        report.abandon_rate_with_false_positives(),
    )?;
    out.set_item("calls_per_agent_hour", report.calls_per_agent_hour())?;
    let (w24, w30) = report.windows_over(0.03);
    out.set_item("windows_over_3pct_24h", w24)?;
    out.set_item("windows_over_3pct_30d", w30)?;
    let list = PyList::empty(py);
    for d in &report.days {
        let day = PyDict::new(py);
        day.set_item("dialed", d.dialed)?;
        day.set_item("live", d.live)?;
        day.set_item("abandoned", d.abandoned)?;
        day.set_item("machine_dropped", d.machine_dropped)?;
        day.set_item("amd_false_positives", d.amd_false_positives)?;
        day.set_item("connected", d.connected)?;
        day.set_item("talk_seconds", d.talk_seconds)?;
        day.set_item("agent_seconds", d.agent_seconds)?;
        day.set_item("rate_24h", d.rate_24h)?;
        day.set_item("rate_30d", d.rate_30d)?;
        list.append(day)?;
    }
    out.set_item("days", list)?;
    Ok(out)
}
