//! Answering-machine detection on the first seconds after answer: a person says a short
//! greeting ("Hello?") and waits; a machine talks on (long greeting, many words); dead air
//! is silence. The thresholds follow the well-tried ones of Asterisk's app_amd.

#[derive(Debug, Clone, Copy)]
pub struct AmdConfig {
    pub initial_silence_ms: u32,
    pub greeting_ms: u32,
    pub after_greeting_silence_ms: u32,
    pub total_analysis_ms: u32,
    pub min_word_length_ms: u32,
    pub between_words_silence_ms: u32,
    pub maximum_words: u32,
    /// Mean absolute amplitude under which a 20 ms frame is silence.
    pub silence_threshold: u32,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_length_ms: 100,
            between_words_silence_ms: 50,
            maximum_words: 3,
            silence_threshold: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdClass {
    Human,
    Machine,
    Silence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdDecision {
    pub class: AmdClass,
    /// Why, in app_amd's terms: "initial-silence", "long-greeting", "max-words",
    /// "after-greeting-silence", "total-time".
    pub reason: &'static str,
    pub decision_ms: u32,
    pub words: u32,
}

#[derive(Debug)]
pub struct AmdDetector {
    cfg: AmdConfig,
    elapsed_ms: u32,
    silence_ms: u32,
    voice_ms: u32,
    greeting_ms: u32,
    in_word: bool,
    heard_voice: bool,
    words: u32,
    decided: Option<AmdDecision>,
}

impl AmdDetector {
    pub fn new(cfg: AmdConfig) -> Self {
        AmdDetector {
            cfg,
            elapsed_ms: 0,
            silence_ms: 0,
            voice_ms: 0,
            greeting_ms: 0,
            in_word: false,
            heard_voice: false,
            words: 0,
            decided: None,
        }
    }

    pub fn decision(&self) -> Option<AmdDecision> {
        self.decided
    }

    /// Feed one frame of the answered party's audio; the decision comes once.
    pub fn push_frame(&mut self, frame: &[i16]) -> Option<AmdDecision> {
        if self.decided.is_some() || frame.is_empty() {
            return None;
        }
        let ms = u32::try_from(frame.len() / 8).unwrap_or(20);
        self.elapsed_ms += ms;
        let mean_abs = frame
            .iter()
            .map(|&s| u64::from(s.unsigned_abs()))
            .sum::<u64>()
            / frame.len() as u64;
        let voiced = mean_abs > u64::from(self.cfg.silence_threshold);
        let decide = |class, reason, s: &Self| AmdDecision {
            class,
            reason,
            decision_ms: s.elapsed_ms,
            words: s.words,
        };
        let mut d = None;
        if voiced {
            self.silence_ms = 0;
            self.voice_ms += ms;
            if self.heard_voice {
                self.greeting_ms += ms;
            }
            if !self.in_word && self.voice_ms >= self.cfg.min_word_length_ms {
                self.in_word = true;
                self.heard_voice = true;
                self.greeting_ms = self.voice_ms;
                self.words += 1;
                if self.words > self.cfg.maximum_words {
                    d = Some(decide(AmdClass::Machine, "max-words", self));
                }
            }
            if d.is_none() && self.heard_voice && self.greeting_ms >= self.cfg.greeting_ms {
                d = Some(decide(AmdClass::Machine, "long-greeting", self));
            }
        } else {
            self.silence_ms += ms;
            if self.heard_voice {
                self.greeting_ms += ms;
            }
            if self.silence_ms >= self.cfg.between_words_silence_ms {
                self.in_word = false;
                self.voice_ms = 0;
            }
            if !self.heard_voice && self.silence_ms >= self.cfg.initial_silence_ms {
                d = Some(decide(AmdClass::Silence, "initial-silence", self));
            } else if self.heard_voice && self.silence_ms >= self.cfg.after_greeting_silence_ms {
                d = Some(decide(AmdClass::Human, "after-greeting-silence", self));
            }
        }
        if d.is_none() && self.elapsed_ms >= self.cfg.total_analysis_ms {
            // Unsure: a dialer must not abandon a possible person, so it goes to an agent.
            d = Some(decide(AmdClass::Human, "total-time", self));
        }
        self.decided = d;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like bursts: (voiced ms, silent ms) pairs.
    fn audio(pattern: &[(u32, u32)]) -> Vec<i16> {
        let mut v = Vec::new();
        for &(voice, silence) in pattern {
            for i in 0..voice * 8 {
                v.push(if i % 16 < 8 { 3000 } else { -3000 });
            }
            v.extend(std::iter::repeat_n(0i16, (silence * 8) as usize));
        }
        v
    }

    fn classify(samples: &[i16]) -> AmdDecision {
        let mut d = AmdDetector::new(AmdConfig::default());
        samples
            .chunks(160)
            .chain(std::iter::repeat_n(&[0i16; 160][..], 400))
            .find_map(|f| d.push_frame(f))
            .expect("a decision")
    }

    #[test]
    fn hello_then_waiting_is_a_person() {
        let d = classify(&audio(&[(200, 100), (300, 2000)]));
        assert_eq!(
            (d.class, d.reason, d.words),
            (AmdClass::Human, "after-greeting-silence", 2)
        );
        assert_eq!(d.decision_ms, 200 + 100 + 300 + 800);
    }

    #[test]
    fn long_greeting_or_many_words_is_a_machine() {
        let d = classify(&audio(&[(1800, 200)]));
        assert_eq!(
            (d.class, d.reason, d.decision_ms),
            (AmdClass::Machine, "long-greeting", 1500)
        );
        let d = classify(&audio(&[
            (150, 100),
            (150, 100),
            (150, 100),
            (150, 100),
            (150, 100),
        ]));
        assert_eq!((d.class, d.reason), (AmdClass::Machine, "max-words"));
        // The fourth word is counted 100 ms into it: at 3 × 250 + 100 ms, give or take a frame.
        assert!((840..=860).contains(&d.decision_ms), "{d:?}");
    }

    #[test]
    fn dead_air_is_silence() {
        let d = classify(&audio(&[(0, 3000)]));
        assert_eq!((d.class, d.decision_ms), (AmdClass::Silence, 2500));
    }
}
