//! Seeded randomness and the distributions a campaign is modelled with.

use std::fmt;

/// splitmix64: small, fast, and reproducible from a seed on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A non-negative duration distribution, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    Constant(f64),
    Uniform {
        lo: f64,
        hi: f64,
    },
    Exponential {
        mean: f64,
    },
    /// Log-normal with the given mean and standard deviation (not of the logarithm).
    LogNormal {
        mean: f64,
        sd: f64,
    },
}

/// A parameter outside its domain.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    pub name: String,
    pub value: f64,
    pub expected: &'static str,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for ParamError {}

pub fn check_probability(name: &str, p: f64) -> Result<f64, ParamError> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(ParamError {
            name: name.to_owned(),
            value: p,
            expected: "a probability from 0 to 1",
        })
    }
}

pub fn check_duration(name: &str, s: f64) -> Result<f64, ParamError> {
    if s.is_finite() && s >= 0.0 {
        Ok(s)
    } else {
        Err(ParamError {
            name: name.to_owned(),
            value: s,
            expected: "a duration ≥ 0 seconds",
        })
    }
}

impl Dist {
    pub fn validate(&self, name: &str) -> Result<(), ParamError> {
        match *self {
            Dist::Constant(v) => check_duration(name, v).map(|_| ()),
            Dist::Uniform { lo, hi } => {
                check_duration(&format!("{name}.lo"), lo)?;
                check_duration(&format!("{name}.hi"), hi)?;
                if hi < lo {
                    return Err(ParamError {
                        name: format!("{name}.hi"),
                        value: hi,
                        expected: "≥ lo",
                    });
                }
                Ok(())
            }
            Dist::Exponential { mean } => check_duration(&format!("{name}.mean"), mean).map(|_| ()),
            Dist::LogNormal { mean, sd } => {
                if !(mean.is_finite() && mean > 0.0) {
                    return Err(ParamError {
                        name: format!("{name}.mean"),
                        value: mean,
                        expected: "> 0",
                    });
                }
                check_duration(&format!("{name}.sd"), sd).map(|_| ())
            }
        }
    }

    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { lo, hi } => (lo + hi) / 2.0,
            Dist::Exponential { mean } | Dist::LogNormal { mean, .. } => mean,
        }
    }

    /// One sample, seconds.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            Dist::Constant(v) => v,
            Dist::Uniform { lo, hi } => lo + (hi - lo) * rng.unit(),
            Dist::Exponential { mean } => -mean * (1.0 - rng.unit()).ln(),
            Dist::LogNormal { mean, sd } => {
                let s2 = (1.0 + (sd * sd) / (mean * mean)).ln();
                let mu = mean.ln() - s2 / 2.0;
                // Box–Muller.
                let (u1, u2) = (1.0 - rng.unit(), rng.unit());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (mu + s2.sqrt() * z).exp()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_means_match_and_seeds_reproduce() {
        for d in [
            Dist::Exponential { mean: 120.0 },
            Dist::LogNormal {
                mean: 60.0,
                sd: 40.0,
            },
            Dist::Uniform { lo: 5.0, hi: 25.0 },
        ] {
            let mut rng = Rng::new(7);
            let n = 200_000;
            let m: f64 = (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64;
            assert!((m - d.mean()).abs() / d.mean() < 0.02, "{d:?}: {m}");
        }
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(Dist::Exponential { mean: -1.0 }.validate("talk").is_err());
        assert!(Dist::Uniform { lo: 5.0, hi: 1.0 }.validate("ring").is_err());
        assert!(Dist::LogNormal { mean: 0.0, sd: 1.0 }
            .validate("talk")
            .is_err());
        assert!(check_probability("p_live", 1.2).is_err());
        assert!(check_probability("p_live", f64::NAN).is_err());
        assert_eq!(check_probability("p_live", 0.25), Ok(0.25));
    }
}
