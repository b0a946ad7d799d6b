//! Skills and the expressions queues require of agents.
//!
//! Grammar (whitespace is free):
//! ```text
//! expr   := term ('|' term)*
//! term   := factor ('&' factor)*
//! factor := '!' factor | '(' expr ')' | test
//! test   := NAME                      the agent has the skill at any level (≥ 1)
//!         | NAME ('>=' | '>' | '<=' | '<' | '=') LEVEL
//! NAME   := letters, digits, '_', '-', '.', ':'   e.g. billing, lang:ru
//! LEVEL  := 1..10
//! ```
//! `billing>=5 & lang:ru` requires billing at level 5 or more and the skill `lang:ru`.
//! Expressions are evaluated when an agent logs in or a queue is configured, never per
//! routing decision: routing looks eligible agents up in indexes built from them.

use std::collections::HashMap;
use std::fmt;

/// An interned skill name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkillId(pub u32);

/// Skill levels run from 1 (novice) to 10 (expert).
pub const MAX_LEVEL: u8 = 10;

/// Interns skill names to ids.
#[derive(Clone, Debug, Default)]
pub struct SkillTable {
    ids: HashMap<String, SkillId>,
    names: Vec<String>,
}

impl SkillTable {
    pub fn intern(&mut self, name: &str) -> SkillId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = SkillId(self.names.len() as u32);
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    pub fn get(&self, name: &str) -> Option<SkillId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: SkillId) -> Option<&str> {
        self.names.get(id.0 as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// A parsed skill expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkillExpr {
    /// Matches every agent (an empty expression).
    Any,
    Has(SkillId, Cmp, u8),
    Not(Box<SkillExpr>),
    And(Vec<SkillExpr>),
    Or(Vec<SkillExpr>),
}

impl SkillExpr {
    /// Does an agent with `skills` (sorted or not; one level per skill) match?
    pub fn matches(&self, skills: &[(SkillId, u8)]) -> bool {
        match self {
            SkillExpr::Any => true,
            SkillExpr::Has(id, cmp, want) => match skills.iter().find(|(s, _)| s == id) {
                None => false,
                Some(&(_, level)) => match cmp {
                    Cmp::Ge => level >= *want,
                    Cmp::Gt => level > *want,
                    Cmp::Le => level <= *want,
                    Cmp::Lt => level < *want,
                    Cmp::Eq => level == *want,
                },
            },
            SkillExpr::Not(e) => !e.matches(skills),
            SkillExpr::And(es) => es.iter().all(|e| e.matches(skills)),
            SkillExpr::Or(es) => es.iter().any(|e| e.matches(skills)),
        }
    }

    /// The first skill the expression names: the one "most skilled" ranks agents by.
    pub fn first_skill(&self) -> Option<SkillId> {
        match self {
            SkillExpr::Any => None,
            SkillExpr::Has(id, _, _) => Some(*id),
            SkillExpr::Not(e) => e.first_skill(),
            SkillExpr::And(es) | SkillExpr::Or(es) => es.iter().find_map(SkillExpr::first_skill),
        }
    }
}

/// Why an expression was refused, with the character offset where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.reason)
    }
}

impl std::error::Error for ExprError {}

/// Parse `text`, interning the skill names it mentions.
pub fn parse(text: &str, skills: &mut SkillTable) -> Result<SkillExpr, ExprError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        skills,
    };
    p.skip_ws();
    if p.pos == p.s.len() {
        return Ok(SkillExpr::Any);
    }
    let e = p.expr(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err(format!("unexpected {:?}", p.rest_char())));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    skills: &'a mut SkillTable,
}

const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn err(&self, reason: String) -> ExprError {
        ExprError {
            offset: self.pos,
            reason,
        }
    }

    fn rest_char(&self) -> char {
        std::str::from_utf8(&self.s[self.pos..])
            .ok()
            .and_then(|r| r.chars().next())
            .unwrap_or('?')
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self, depth: usize) -> Result<SkillExpr, ExprError> {
        let mut terms = vec![self.term(depth)?];
        while self.eat(b'|') {
            terms.push(self.term(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            SkillExpr::Or(terms)
        })
    }

    fn term(&mut self, depth: usize) -> Result<SkillExpr, ExprError> {
        let mut factors = vec![self.factor(depth)?];
        while self.eat(b'&') {
            factors.push(self.factor(depth)?);
        }
        Ok(if factors.len() == 1 {
            factors.remove(0)
        } else {
            SkillExpr::And(factors)
        })
    }

    fn factor(&mut self, depth: usize) -> Result<SkillExpr, ExprError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        if self.eat(b'!') {
            return Ok(SkillExpr::Not(Box::new(self.factor(depth + 1)?)));
        }
        if self.eat(b'(') {
            let e = self.expr(depth + 1)?;
            if !self.eat(b')') {
                return Err(self.err("expected ')'".into()));
            }
            return Ok(e);
        }
        self.test()
    }

    fn test(&mut self) -> Result<SkillExpr, ExprError> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || b"_-.:".contains(&self.s[self.pos]))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(if self.pos == self.s.len() {
                self.err("expected a skill name, found the end".into())
            } else {
                self.err(format!(
                    "expected a skill name, found {:?}",
                    self.rest_char()
                ))
            });
        }
        // The bytes are ASCII by the loop above.
        let name = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
        let id = self.skills.intern(name);
        self.skip_ws();
        let cmp = match (self.s.get(self.pos), self.s.get(self.pos + 1)) {
            (Some(b'>'), Some(b'=')) => Some((Cmp::Ge, 2)),
            (Some(b'<'), Some(b'=')) => Some((Cmp::Le, 2)),
            (Some(b'>'), _) => Some((Cmp::Gt, 1)),
            (Some(b'<'), _) => Some((Cmp::Lt, 1)),
            (Some(b'='), _) => Some((Cmp::Eq, 1)),
            _ => None,
        };
        let Some((cmp, len)) = cmp else {
            return Ok(SkillExpr::Has(id, Cmp::Ge, 1));
        };
        self.pos += len;
        self.skip_ws();
        let num_start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.s[num_start..self.pos]).unwrap_or_default();
        match digits.parse::<u8>() {
            Ok(level) if (1..=MAX_LEVEL).contains(&level) => Ok(SkillExpr::Has(id, cmp, level)),
            _ => {
                self.pos = num_start;
                Err(self.err(format!(
                    "expected a level from 1 to {MAX_LEVEL} after {name:?}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(t: &mut SkillTable, s: &[(&str, u8)]) -> Vec<(SkillId, u8)> {
        s.iter().map(|(n, l)| (t.intern(n), *l)).collect()
    }

    #[test]
    fn the_issue_example() {
        let mut t = SkillTable::default();
        let e = parse("billing>=5 & lang:ru", &mut t).unwrap();
        assert!(e.matches(&agent(&mut t, &[("billing", 7), ("lang:ru", 1)])));
        assert!(!e.matches(&agent(&mut t, &[("billing", 4), ("lang:ru", 1)])));
        assert!(!e.matches(&agent(&mut t, &[("billing", 9)])));
        assert_eq!(e.first_skill(), t.get("billing"));
    }

    #[test]
    fn operators_and_precedence() {
        let mut t = SkillTable::default();
        let e = parse("a | b & !c", &mut t).unwrap(); // a | (b & !c)
        assert!(e.matches(&agent(&mut t, &[("a", 1), ("c", 1)])));
        assert!(e.matches(&agent(&mut t, &[("b", 1)])));
        assert!(!e.matches(&agent(&mut t, &[("b", 1), ("c", 3)])));
        let e = parse("(a|b) & x<3", &mut t).unwrap();
        assert!(e.matches(&agent(&mut t, &[("b", 1), ("x", 2)])));
        assert!(!e.matches(&agent(&mut t, &[("b", 1), ("x", 3)])));
        let e = parse("x=10 | y>9", &mut t).unwrap();
        assert!(e.matches(&agent(&mut t, &[("x", 10)])));
        assert!(e.matches(&agent(&mut t, &[("y", 10)])));
        assert_eq!(parse("  ", &mut t).unwrap(), SkillExpr::Any);
    }

    #[test]
    fn errors_say_where() {
        let mut t = SkillTable::default();
        let cases = [
            ("billing>=11", 9, "level from 1 to 10"),
            ("billing>=", 9, "level"),
            ("a &", 3, "found the end"),
            ("a & & b", 4, "found '&'"),
            ("(a | b", 6, "expected ')'"),
            ("a b", 2, "unexpected 'b'"),
            ("a & é", 4, "found 'é'"),
        ];
        for (text, offset, reason) in cases {
            let e = parse(text, &mut t).unwrap_err();
            assert_eq!(e.offset, offset, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
        let deep = "(".repeat(100) + "a" + &")".repeat(100);
        assert!(parse(&deep, &mut t).unwrap_err().reason.contains("nested"));
    }
}
