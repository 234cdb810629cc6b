//! Claims-matching expressions, language version 1: what a flexible federated identity credential
//! carries instead of an exact `subject` (Entra's `claimsMatchingExpression`).
//!
//! Grammar: clauses joined by `and` (case-insensitive keywords, any whitespace between tokens):
//!
//! ```text
//! expression := clause ( "and" clause )*
//! clause     := "claims[" quoted "]" ( "eq" | "matches" ) quoted
//! quoted     := "'" ( any character but ' and \ | "\'" | "\\" | "\*" )* "'"
//! ```
//!
//! `eq` compares the claim's string value exactly (case-sensitive). `matches` compares it with a
//! pattern in which `*` stands for any run of characters (none included) and `\*` for a literal
//! asterisk. A clause holds only when the claim is present and a string. An expression is at most
//! [`MAX_EXPRESSION_LEN`] characters with at most [`MAX_CLAUSES`] clauses; a faulty one is refused
//! with the character position and the reason.
//!
//! An expression is compiled once, when a credential is written or loaded; matching walks the
//! compiled clauses and never parses.

use std::fmt;

/// The only language version there is.
pub const LANGUAGE_VERSION: u32 = 1;
/// Longest expression, in characters.
pub const MAX_EXPRESSION_LEN: usize = 600;
/// Most clauses in one expression.
pub const MAX_CLAUSES: usize = 20;

/// Why an expression was refused: where (0-based character position) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claimsMatchingExpression is invalid at position {position}: {reason}")]
pub struct ExpressionError {
    pub position: usize,
    pub reason: String,
}

/// One side of a pattern: the text between asterisks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal runs between `*`s, in order; `n` runs mean `n - 1` wildcards.
    parts: Vec<String>,
}

impl Pattern {
    /// Whether `value` matches: the first run is a prefix, the last a suffix, the others appear
    /// in order between them (greedy from the left is exact for `*`-only patterns).
    pub fn is_match(&self, value: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else { return value.is_empty() };
        let Some(mut remaining) = value.strip_prefix(first.as_str()) else { return false };
        let Some((last, middle)) = rest.split_last() else { return remaining.is_empty() };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped: Vec<String> = self.parts.iter().map(|p| escape(p, true)).collect();
        f.write_str(&escaped.join("*"))
    }
}

/// What a clause compares the claim with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    Eq(String),
    Matches(Pattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub claim: String,
    pub comparison: Comparison,
}

impl Clause {
    /// Whether `value` (the claim's string value, `None` when absent or not a string) satisfies it.
    pub fn holds(&self, value: Option<&str>) -> bool {
        match (value, &self.comparison) {
            (None, _) => false,
            (Some(value), Comparison::Eq(expected)) => value == expected,
            (Some(value), Comparison::Matches(pattern)) => pattern.is_match(value),
        }
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.comparison {
            Comparison::Eq(value) => {
                write!(f, "claims['{}'] eq '{}'", escape(&self.claim, false), escape(value, false))
            }
            Comparison::Matches(pattern) => write!(f, "claims['{}'] matches '{pattern}'", escape(&self.claim, false)),
        }
    }
}

fn escape(text: &str, pattern: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\'' || c == '\\' || (pattern && c == '*') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A compiled expression, with the text it was written as (echoed by the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsExpression {
    text: String,
    clauses: Vec<Clause>,
}

impl ClaimsExpression {
    /// Compiles `text` written in `language_version`.
    pub fn parse(text: &str, language_version: u32) -> Result<Self, ExpressionError> {
        if language_version != LANGUAGE_VERSION {
            return Err(ExpressionError {
                position: 0,
                reason: format!("languageVersion {language_version} is not supported; use {LANGUAGE_VERSION}"),
            });
        }
        let length = text.chars().count();
        if length > MAX_EXPRESSION_LEN {
            return Err(ExpressionError {
                position: MAX_EXPRESSION_LEN,
                reason: format!("the expression is {length} characters long; at most {MAX_EXPRESSION_LEN} are allowed"),
            });
        }
        let clauses = Parser { chars: text.chars().collect(), at: 0 }.expression()?;
        Ok(Self { text: text.to_owned(), clauses })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// Whether every clause holds for the claims `claim` looks up (string values only).
    pub fn is_match<'a>(&self, claim: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.clauses.iter().all(|clause| clause.holds(claim(&clause.claim)))
    }

    /// The first clause that does not hold, if any.
    pub fn first_failure<'a>(&self, claim: impl Fn(&str) -> Option<&'a str>) -> Option<&Clause> {
        self.clauses.iter().find(|clause| !clause.holds(claim(&clause.claim)))
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, ExpressionError> {
        Err(ExpressionError { position: self.at, reason: reason.into() })
    }

    fn skip_space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    /// Consumes `word` (ASCII, case-insensitive) if it comes next.
    fn keyword(&mut self, word: &str) -> bool {
        let end = self.at + word.len();
        let matches = self
            .chars
            .get(self.at..end)
            .is_some_and(|got| got.iter().zip(word.chars()).all(|(a, b)| a.eq_ignore_ascii_case(&b)));
        // A keyword ends where a word ends: `andx` is not `and`.
        let bounded = !self.chars.get(end).is_some_and(|c| c.is_alphanumeric() || *c == '_');
        if matches && bounded {
            self.at = end;
        }
        matches && bounded
    }

    fn expect(&mut self, symbol: char, what: &str) -> Result<(), ExpressionError> {
        if self.chars.get(self.at) == Some(&symbol) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    fn expression(&mut self) -> Result<Vec<Clause>, ExpressionError> {
        let mut clauses = Vec::new();
        loop {
            self.skip_space();
            if clauses.len() == MAX_CLAUSES {
                return self.fail(format!("at most {MAX_CLAUSES} clauses are allowed"));
            }
            clauses.push(self.clause()?);
            self.skip_space();
            if self.at == self.chars.len() {
                return Ok(clauses);
            }
            if !self.keyword("and") {
                return self.fail("expected 'and' or the end of the expression");
            }
        }
    }

    fn clause(&mut self) -> Result<Clause, ExpressionError> {
        if self.at == self.chars.len() {
            return self
                .fail("expected a clause: claims['<name>'] eq '<value>' or claims['<name>'] matches '<pattern>'");
        }
        if !self.keyword("claims") {
            return self.fail("expected claims['<name>']");
        }
        self.skip_space();
        self.expect('[', "'[' after claims")?;
        self.skip_space();
        let at = self.at;
        let (claim, _) = self.quoted(false)?;
        if claim.is_empty() {
            return Err(ExpressionError { position: at, reason: "the claim name is empty".into() });
        }
        self.skip_space();
        self.expect(']', "']' after the claim name")?;
        self.skip_space();
        let comparison = if self.keyword("eq") {
            self.skip_space();
            Comparison::Eq(self.quoted(false)?.0)
        } else if self.keyword("matches") {
            self.skip_space();
            let (_, parts) = self.quoted(true)?;
            Comparison::Matches(Pattern { parts })
        } else {
            return self.fail("expected the operator 'eq' or 'matches'");
        };
        Ok(Clause { claim, comparison })
    }

    /// A single-quoted string; with `pattern`, also its literal runs between unescaped `*`s.
    fn quoted(&mut self, pattern: bool) -> Result<(String, Vec<String>), ExpressionError> {
        self.expect('\'', "a single-quoted string")?;
        let (mut text, mut parts, mut run) = (String::new(), Vec::new(), String::new());
        loop {
            let Some(&c) = self.chars.get(self.at) else {
                return self.fail("the quoted string is not closed");
            };
            self.at += 1;
            match c {
                '\'' => break,
                '\\' => {
                    let Some(&next) = self.chars.get(self.at) else {
                        return self.fail("the quoted string is not closed");
                    };
                    if next != '\'' && next != '\\' && !(pattern && next == '*') {
                        return self.fail(if pattern {
                            "only \\', \\\\ and \\* are escapes"
                        } else {
                            "only \\' and \\\\ are escapes"
                        });
                    }
                    self.at += 1;
                    text.push(next);
                    run.push(next);
                }
                '*' if pattern => {
                    text.push('*');
                    parts.push(std::mem::take(&mut run));
                }
                c if c.is_control() => return self.fail("control characters are not allowed"),
                c => {
                    text.push(c);
                    run.push(c);
                }
            }
        }
        parts.push(run);
        Ok((text, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClaimsExpression {
        ClaimsExpression::parse(text, 1).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> ExpressionError {
        ClaimsExpression::parse(text, 1).expect_err(text)
    }

    #[test]
    fn wildcards_match_any_run_of_characters_anchored_at_both_ends() {
        let pattern = |p: &str| match &parse(&format!("claims['c'] matches '{p}'")).clauses()[0].comparison {
            Comparison::Matches(pattern) => pattern.clone(),
            Comparison::Eq(_) => panic!("not a pattern"),
        };
        assert!(pattern("repo:octo/*").is_match("repo:octo/app:ref:refs/heads/main"));
        assert!(!pattern("repo:octo/*").is_match("repo:octopus/app"));
        assert!(pattern("*:ref:refs/heads/main").is_match("repo:octo/app:ref:refs/heads/main"));
        assert!(!pattern("*:ref:refs/heads/main").is_match("repo:octo/app:ref:refs/heads/main2"));
        assert!(pattern("a*b*c").is_match("abc"));
        assert!(pattern("a*b*c").is_match("a-b-b-c"));
        assert!(!pattern("a*b*c").is_match("a-c-b"));
        assert!(!pattern("ab*ba").is_match("aba"), "prefix and suffix may not overlap");
        assert!(pattern("*").is_match(""));
        assert!(pattern("x\\*y").is_match("x*y"));
        assert!(!pattern("x\\*y").is_match("x-y"), "an escaped asterisk is literal");
    }

    #[test]
    fn clauses_join_with_and_and_all_must_hold_on_string_claims() {
        let expression = parse(
            "claims['sub'] matches 'repo:octo/*' AND claims['environment'] eq 'prod'\n and claims[ 'ref_type' ]eq'branch'",
        );
        assert_eq!(expression.clauses().len(), 3);
        let claims = |sub: &'static str, env: Option<&'static str>| {
            move |name: &str| match name {
                "sub" => Some(sub),
                "environment" => env,
                "ref_type" => Some("branch"),
                _ => None,
            }
        };
        assert!(expression.is_match(claims("repo:octo/app", Some("prod"))));
        assert!(!expression.is_match(claims("repo:octo/app", Some("Prod"))), "eq is case-sensitive");
        assert!(!expression.is_match(claims("repo:octo/app", None)), "an absent claim fails its clause");
        let failed = expression.first_failure(claims("repo:other/app", Some("prod"))).unwrap();
        assert_eq!(failed.to_string(), "claims['sub'] matches 'repo:octo/*'");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_with_a_backslash() {
        let expression = parse(r"claims['name'] eq 'O\'Brien \\ co'");
        let Comparison::Eq(value) = &expression.clauses()[0].comparison else { panic!("eq") };
        assert_eq!(value, r"O'Brien \ co");
        assert_eq!(expression.clauses()[0].to_string(), r"claims['name'] eq 'O\'Brien \\ co'");
    }

    #[test]
    fn a_faulty_expression_is_refused_with_the_position_and_the_reason() {
        let cases = [
            ("", 0, "expected a clause"),
            ("claims['sub'] eq 'a' or claims['x'] eq 'b'", 21, "expected 'and'"),
            ("claims['sub'] == 'a'", 14, "expected the operator"),
            ("claim['sub'] eq 'a'", 0, "expected claims"),
            ("claims['sub' eq 'a'", 13, "expected ']'"),
            ("claims['sub'] eq 'a", 19, "not closed"),
            ("claims[''] eq 'a'", 7, "claim name is empty"),
            ("claims['sub'] eq 'a\\n'", 20, "escapes"),
            ("claims['sub'] eq 'a' and", 24, "expected a clause"),
            ("claims['sub'] eq a", 17, "single-quoted"),
        ];
        for (text, position, reason) in cases {
            let e = error(text);
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
        let long = format!("claims['sub'] eq '{}'", "a".repeat(600));
        assert!(error(&long).reason.contains("at most 600"));
        let many = vec!["claims['a'] eq 'b'"; 21].join(" and ");
        assert!(error(&many).reason.contains("at most 20 clauses"));
        assert!(ClaimsExpression::parse("claims['a'] eq 'b'", 2).unwrap_err().reason.contains("languageVersion 2"));
    }
}
