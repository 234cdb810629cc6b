//! Federated identity credentials: which external identity (issuer + subject, presenting an
//! assertion for an audience) may act as an application or a user-assigned identity.
//!
//! Rules (Microsoft Graph's): `name` 3-120 characters of letters, digits, `-` and `_`, starting
//! with a letter or digit, unique per owner and immutable; `issuer` an https URL of at most 600
//! characters (`http` only for loopback, and only when development allows it); `subject` 1-600
//! characters; `audiences` exactly one value of at most 600 characters; `description` at most 600;
//! at most [`MAX_PER_OWNER`] per owner; (issuer, subject) unique per owner. Matching is exact and
//! case-sensitive.
//!
//! A *flexible* credential carries a claims-matching expression instead of a subject (Entra's
//! `claimsMatchingExpression`, language version 1: [`super::claims_expression`]): never both, never
//! neither. Issuer and audience still match exactly; the expression is compiled when the
//! credential is written or loaded, and the 20-per-owner limit counts flexible credentials too.

use std::fmt;

use url::Url;

use super::claims_expression::{ClaimsExpression, ExpressionError};
use super::ids::ObjectId;
use super::token::Claims;

/// At most this many federated credentials per application or user-assigned identity.
pub const MAX_PER_OWNER: usize = 20;
/// Longest issuer, subject, audience or description.
pub const MAX_FIELD_LEN: usize = 600;
/// The audience Entra recommends and uses by default.
pub const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "name '{0}' is invalid: use 3-120 characters of letters, digits, '-' and '_', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("issuer is invalid: {0}")]
    InvalidIssuer(String),
    #[error("subject is invalid: it must be 1-600 characters without control characters")]
    InvalidSubject,
    #[error("audiences must contain exactly one value, found {0}")]
    AudienceCount(usize),
    #[error("audience is invalid: it must be 1-600 characters without control characters")]
    InvalidAudience,
    #[error("description is longer than 600 characters")]
    DescriptionTooLong,
    #[error("the limit of 20 federated identity credentials per application or identity is reached")]
    LimitReached,
    #[error("a federated identity credential named '{0}' already exists")]
    DuplicateName(String),
    #[error("a federated identity credential with this issuer and subject already exists")]
    DuplicateIssuerSubject,
    #[error("the name of a federated identity credential cannot be changed")]
    NameIsImmutable,
    #[error("give either subject or claimsMatchingExpression, not both")]
    SubjectAndExpression,
    #[error("give subject or claimsMatchingExpression")]
    NoSubjectOrExpression,
    #[error("{0}")]
    InvalidExpression(#[from] ExpressionError),
}

fn is_clean(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= MAX_FIELD_LEN && !value.chars().any(char::is_control)
}

/// A credential's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialName(String);

impl CredentialName {
    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        let len_ok = (3..=120).contains(&raw.len());
        let chars_ok = raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let first_ok = raw.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if len_ok && chars_ok && first_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(CredentialError::InvalidName(raw.chars().take(130).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `http://` issuers on loopback addresses are accepted (development only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IssuerPolicy {
    pub allow_http_loopback: bool,
}

/// An issuer URL, kept exactly as written: matching compares it byte for byte with `iss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(raw: &str, policy: IssuerPolicy) -> Result<Self, CredentialError> {
        let invalid = |why: &str| CredentialError::InvalidIssuer(why.to_owned());
        if !is_clean(raw) {
            return Err(invalid("it must be 1-600 characters without control characters"));
        }
        let url = Url::parse(raw).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("it must not carry a query, fragment or credentials"));
        }
        match url.scheme() {
            "https" => Ok(Self(raw.to_owned())),
            "http" if policy.allow_http_loopback && is_loopback(&url) => Ok(Self(raw.to_owned())),
            "http" => Err(invalid("it must use https (http is allowed only for loopback in development)")),
            _ => Err(invalid("it must be an https URL")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `sub` an assertion must carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        if is_clean(raw) { Ok(Self(raw.to_owned())) } else { Err(CredentialError::InvalidSubject) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The audience an assertion's `aud` must contain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Audience(String);

impl Audience {
    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        if is_clean(raw) { Ok(Self(raw.to_owned())) } else { Err(CredentialError::InvalidAudience) }
    }

    /// Exactly one audience, as Graph requires; none given means the default.
    pub fn parse_list(raw: Option<&[String]>) -> Result<Self, CredentialError> {
        match raw {
            None => Self::parse(DEFAULT_AUDIENCE),
            Some([one]) => Self::parse(one),
            Some(many) => Err(CredentialError::AudienceCount(many.len())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated description (at most 600 characters).
pub fn parse_description(raw: Option<&str>) -> Result<Option<String>, CredentialError> {
    match raw {
        Some(text) if text.chars().count() > MAX_FIELD_LEN => Err(CredentialError::DescriptionTooLong),
        Some(text) if !text.is_empty() => Ok(Some(text.to_owned())),
        _ => Ok(None),
    }
}

/// Who a credential lets act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialOwner {
    /// An application, by object id.
    Application(ObjectId),
    /// A user-assigned managed identity, by principal id.
    Identity(ObjectId),
}

impl CredentialOwner {
    /// The owner's object id (object ids never collide across kinds).
    pub fn id(self) -> ObjectId {
        match self {
            Self::Application(id) | Self::Identity(id) => id,
        }
    }
}

/// What a credential asks of an assertion besides its issuer and audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    /// The `sub` claim, exactly.
    Exact(Subject),
    /// Every clause of a compiled claims-matching expression (a flexible credential).
    Expression(ClaimsExpression),
}

impl SubjectMatch {
    /// From a request that gives a subject or an expression (text and language version).
    pub fn parse(subject: Option<&str>, expression: Option<(&str, u32)>) -> Result<Self, CredentialError> {
        match (subject, expression) {
            (Some(_), Some(_)) => Err(CredentialError::SubjectAndExpression),
            (Some(subject), None) => Ok(Self::Exact(Subject::parse(subject)?)),
            (None, Some((text, version))) => Ok(Self::Expression(ClaimsExpression::parse(text, version)?)),
            (None, None) => Err(CredentialError::NoSubjectOrExpression),
        }
    }

    /// The subject, for an exact credential.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Exact(subject) => Some(subject.as_str()),
            Self::Expression(_) => None,
        }
    }

    /// The expression, for a flexible credential.
    pub fn expression(&self) -> Option<&ClaimsExpression> {
        match self {
            Self::Exact(_) => None,
            Self::Expression(expression) => Some(expression),
        }
    }

    /// What the registry stores: the subject or the expression's text, and the expression's
    /// language version (`None` for a subject).
    pub fn stored(&self) -> (&str, Option<u32>) {
        match self {
            Self::Exact(subject) => (subject.as_str(), None),
            Self::Expression(expression) => (expression.text(), Some(super::claims_expression::LANGUAGE_VERSION)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub id: ObjectId,
    pub owner: CredentialOwner,
    pub name: CredentialName,
    pub issuer: Issuer,
    pub matching: SubjectMatch,
    pub audience: Audience,
    pub description: Option<String>,
}

impl FederatedCredential {
    /// Exact, case-sensitive match on the issuer; `audiences` (the assertion's `aud`) must
    /// contain this credential's audience; then the subject, exactly, or every clause of the
    /// expression against the assertion's (verified) `claims`.
    ///
    /// The cheapest test that tells an application's credentials apart comes first: for an exact
    /// credential the subject (its siblings usually share the issuer and audience, so comparing
    /// those first would pass for every one of them), for a flexible one the issuer and audience
    /// before the expression is evaluated.
    pub fn matches(&self, issuer: &str, subject: &str, claims: &Claims, audiences: &[&str]) -> bool {
        let names = || self.issuer.as_str() == issuer && audiences.iter().any(|a| *a == self.audience.as_str());
        match &self.matching {
            SubjectMatch::Exact(expected) => expected.as_str() == subject && names(),
            SubjectMatch::Expression(expression) => {
                names() && expression.is_match(|name| claims.get(name).and_then(|v| v.as_str()))
            }
        }
    }
}

/// Why none of an owner's credentials matched an assertion, as precisely as Entra says it. The
/// fields are weighed in the order Entra names them: issuer, then audience, then subject (the
/// variants are ordered by how far an assertion got).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mismatch {
    /// No credential names the assertion's issuer.
    Issuer,
    /// Credentials name the issuer, but none of them one of the assertion's audiences.
    Audience,
    /// A credential names the issuer and an audience, but no such credential the subject.
    Subject,
    /// As `Subject`, but one such credential's subject differs from the assertion's only in
    /// letter case (matching is case-sensitive).
    SubjectCase,
}

impl Mismatch {
    /// Why `credentials` (none of which matches) refuse the presented issuer, subject and audiences.
    pub fn of(credentials: &[FederatedCredential], issuer: &str, subject: &str, audiences: &[&str]) -> Self {
        let mut worst = Self::Issuer;
        for credential in credentials.iter().filter(|c| c.issuer.as_str() == issuer) {
            if !audiences.contains(&credential.audience.as_str()) {
                worst = worst.max(Self::Audience);
            } else if credential.matching.subject().is_some_and(|s| s.to_lowercase() == subject.to_lowercase()) {
                return Self::SubjectCase;
            } else {
                worst = Self::Subject;
            }
        }
        worst
    }

    /// Entra's AADSTS code for it.
    pub fn aadsts(self) -> u32 {
        match self {
            Self::Issuer => 700211,
            Self::Audience => 700212,
            Self::Subject => 700213,
            Self::SubjectCase => 7002138,
        }
    }
}

/// The credential nearest to an assertion that none matched, and what differs, field by field
/// (or, for a flexible credential, the first clause that failed and the claim's value). Nearest:
/// the same issuer first, then the fewest differing fields, then the longest common start of the
/// subjects. Linear in the credentials' and values' lengths, so a failing request costs no more
/// to explain than to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub credential: String,
    pub differences: Vec<String>,
}

impl Diagnosis {
    pub fn nearest(
        credentials: &[FederatedCredential],
        issuer: &str,
        subject: &str,
        claims: &Claims,
        audiences: &[&str],
    ) -> Option<Self> {
        let common_start = |c: &FederatedCredential| {
            c.matching.subject().map_or(0, |s| s.chars().zip(subject.chars()).take_while(|(a, b)| a == b).count())
        };
        credentials
            .iter()
            .map(|c| (c, Self::against(c, issuer, subject, claims, audiences)))
            .min_by_key(|(c, d)| (c.issuer.as_str() != issuer, d.differences.len(), std::cmp::Reverse(common_start(c))))
            .map(|(_, d)| d)
    }

    fn against(c: &FederatedCredential, issuer: &str, subject: &str, claims: &Claims, audiences: &[&str]) -> Self {
        // For an expression, the first clause that failed is the one to fix first.
        let mut clause_reported = false;
        let differences = c
            .checks(issuer, subject, claims, audiences)
            .into_iter()
            .filter(|check| !check.holds)
            .filter(|check| check.claim.is_none() || !std::mem::replace(&mut clause_reported, true))
            .map(|check| check.to_string())
            .collect();
        Self { credential: c.name.as_str().to_owned(), differences }
    }
}

/// One comparison of a credential with an assertion: a field (issuer, audience, subject) or a
/// clause of its expression, with what it expects, what was presented, and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `issuer`, `audience`, `subject`, or the clause as written.
    pub what: String,
    pub expected: String,
    /// The presented value (for a clause: the claim's value; `None` when absent or not a string).
    pub presented: Option<String>,
    pub holds: bool,
    /// For a clause: the claim it reads (`None` for a field).
    pub claim: Option<String>,
    /// For a clause whose claim is present but not a string.
    pub not_a_string: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(claim) = &self.claim else {
            let presented = self.presented.as_deref().unwrap_or_default();
            return write!(f, "{} expected '{}', presented '{presented}'", self.what, self.expected);
        };
        let value = match (&self.presented, self.not_a_string) {
            (Some(text), _) => format!("is '{text}'"),
            (None, true) => "is not a string".to_owned(),
            (None, false) => "is absent".to_owned(),
        };
        write!(f, "clause {} {}: claim '{claim}' {value}", self.what, if self.holds { "holds" } else { "failed" })
    }
}

impl FederatedCredential {
    /// Every comparison this credential makes with an assertion, in order: issuer, audience,
    /// then the subject or each clause of the expression.
    pub fn checks(&self, issuer: &str, subject: &str, claims: &Claims, audiences: &[&str]) -> Vec<Check> {
        let field = |what: &str, expected: &str, presented: String, holds: bool| Check {
            what: what.to_owned(),
            expected: expected.to_owned(),
            presented: Some(presented),
            holds,
            claim: None,
            not_a_string: false,
        };
        let mut checks = vec![
            field("issuer", self.issuer.as_str(), issuer.to_owned(), self.issuer.as_str() == issuer),
            field("audience", self.audience.as_str(), audiences.join(","), audiences.contains(&self.audience.as_str())),
        ];
        match &self.matching {
            SubjectMatch::Exact(expected) => {
                checks.push(field("subject", expected.as_str(), subject.to_owned(), expected.as_str() == subject));
            }
            SubjectMatch::Expression(expression) => {
                for clause in expression.clauses() {
                    let value = claims.get(&clause.claim);
                    let text = value.and_then(|v| v.as_str());
                    checks.push(Check {
                        what: clause.to_string(),
                        expected: clause.to_string(),
                        presented: text.map(str::to_owned),
                        holds: clause.holds(text),
                        claim: Some(clause.claim.clone()),
                        not_a_string: value.is_some() && text.is_none(),
                    });
                }
            }
        }
        checks
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nearest credential '{}': {}", self.credential, self.differences.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: IssuerPolicy = IssuerPolicy { allow_http_loopback: false };
    const DEV: IssuerPolicy = IssuerPolicy { allow_http_loopback: true };

    #[test]
    fn names_follow_graphs_rules() {
        for good in ["abc", "gh-main_1", &"a".repeat(120)] {
            assert!(CredentialName::parse(good).is_ok(), "{good}");
        }
        for bad in ["ab", "-abc", "_abc", "a b", "a.b", "ünï", &"a".repeat(121)] {
            assert!(CredentialName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn issuers_must_be_https_except_loopback_in_development() {
        assert!(Issuer::parse("https://token.actions.githubusercontent.com", STRICT).is_ok());
        assert!(Issuer::parse("http://127.0.0.1:9000", STRICT).is_err());
        assert!(Issuer::parse("http://127.0.0.1:9000", DEV).is_ok());
        assert!(Issuer::parse("http://localhost:9000/x", DEV).is_ok());
        assert!(Issuer::parse("http://example.com", DEV).is_err());
        assert!(Issuer::parse("ftp://example.com", DEV).is_err());
        assert!(Issuer::parse("https://example.com/?q=1", STRICT).is_err());
        assert!(Issuer::parse(&format!("https://example.com/{}", "a".repeat(600)), STRICT).is_err());
    }

    #[test]
    fn subjects_and_audiences_are_bounded_and_printable() {
        assert!(Subject::parse("repo:octo/app:ref:refs/heads/main").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse("a\nb").is_err());
        assert!(Subject::parse(&"s".repeat(601)).is_err());
        assert_eq!(Audience::parse_list(None).unwrap().as_str(), DEFAULT_AUDIENCE);
        assert_eq!(Audience::parse_list(Some(&[])), Err(CredentialError::AudienceCount(0)));
        assert_eq!(Audience::parse_list(Some(&["a".into(), "b".into()])), Err(CredentialError::AudienceCount(2)));
    }

    fn credential(issuer: &str, subject: &str, audience: &str) -> FederatedCredential {
        FederatedCredential {
            id: ObjectId::random(),
            owner: CredentialOwner::Application(ObjectId::random()),
            name: CredentialName("gh".into()),
            issuer: Issuer::parse(issuer, STRICT).unwrap(),
            matching: SubjectMatch::Exact(Subject::parse(subject).unwrap()),
            audience: Audience::parse(audience).unwrap(),
            description: None,
        }
    }

    #[test]
    fn a_mismatch_names_the_first_field_that_no_credential_accepts() {
        let credentials = [
            credential("https://issuer.example", "repo:Octo/App", DEFAULT_AUDIENCE),
            credential("https://issuer.example", "repo:Octo/Other", "api://other"),
        ];
        let of = |issuer, subject, audiences: &[&str]| Mismatch::of(&credentials, issuer, subject, audiences);
        assert_eq!(of("https://elsewhere.example", "repo:Octo/App", &[DEFAULT_AUDIENCE]), Mismatch::Issuer);
        assert_eq!(of("https://issuer.example", "repo:Octo/App", &["api://unknown"]), Mismatch::Audience);
        assert_eq!(of("https://issuer.example", "repo:Octo/Nope", &[DEFAULT_AUDIENCE]), Mismatch::Subject);
        assert_eq!(of("https://issuer.example", "repo:octo/app", &[DEFAULT_AUDIENCE]), Mismatch::SubjectCase);
        assert_eq!(
            of("https://issuer.example", "repo:octo/other", &[DEFAULT_AUDIENCE]),
            Mismatch::Subject,
            "a case-insensitive equal under another audience does not count"
        );
        assert_eq!(Mismatch::of(&[], "https://issuer.example", "s", &[DEFAULT_AUDIENCE]), Mismatch::Issuer);
        assert_eq!(
            [Mismatch::Issuer, Mismatch::Audience, Mismatch::Subject, Mismatch::SubjectCase].map(Mismatch::aadsts),
            [700211, 700212, 700213, 7002138]
        );
    }

    #[test]
    fn the_diagnosis_names_the_nearest_credential_and_what_differs() {
        let mut flexible = credential("https://ci.example", "unused", DEFAULT_AUDIENCE);
        flexible.name = CredentialName("ci-prod".into());
        flexible.matching = SubjectMatch::parse(
            None,
            Some(("claims['sub'] matches 'repo:octo/*' and claims['environment'] eq 'prod'", 1)),
        )
        .unwrap();
        let mut exact = credential("https://issuer.example", "repo:Octo/App:ref:refs/heads/main", DEFAULT_AUDIENCE);
        exact.name = CredentialName("main".into());
        let mut other = credential("https://issuer.example", "repo:Other/Thing", "api://other");
        other.name = CredentialName("other".into());
        let credentials = [flexible, exact, other];
        let none = Claims::new();
        let nearest = |issuer, subject, claims: &Claims, audiences: &[&str]| {
            Diagnosis::nearest(&credentials, issuer, subject, claims, audiences).unwrap().to_string()
        };
        assert_eq!(
            nearest("https://issuer.example", "repo:Octo/App:ref:refs/heads/dev", &none, &[DEFAULT_AUDIENCE]),
            "nearest credential 'main': subject expected 'repo:Octo/App:ref:refs/heads/main', presented 'repo:Octo/App:ref:refs/heads/dev'"
        );
        assert_eq!(
            nearest("https://issuer.example", "repo:Other/Thing", &none, &[DEFAULT_AUDIENCE]),
            "nearest credential 'other': audience expected 'api://other', presented 'api://AzureADTokenExchange'",
            "one differing field beats two"
        );
        let mut claims = Claims::new();
        claims.insert("sub".into(), "repo:octo/app".into());
        assert_eq!(
            nearest("https://ci.example", "repo:octo/app", &claims, &[DEFAULT_AUDIENCE]),
            "nearest credential 'ci-prod': clause claims['environment'] eq 'prod' failed: claim 'environment' is absent"
        );
        claims.insert("environment".into(), "dev".into());
        assert!(
            nearest("https://ci.example", "repo:octo/app", &claims, &[DEFAULT_AUDIENCE])
                .ends_with("claim 'environment' is 'dev'")
        );
        assert_eq!(
            nearest("https://elsewhere.example", "repo:Octo/App:ref:refs/heads/main", &none, &[DEFAULT_AUDIENCE]),
            "nearest credential 'main': issuer expected 'https://issuer.example', presented 'https://elsewhere.example'",
            "with no credential of its issuer, the nearest by the other fields"
        );
        assert!(Diagnosis::nearest(&[], "i", "s", &none, &[]).is_none());
    }

    #[test]
    fn matching_is_exact_and_case_sensitive() {
        let fic = credential("https://issuer.example", "repo:Octo/App", DEFAULT_AUDIENCE);
        let none = Claims::new();
        assert!(fic.matches("https://issuer.example", "repo:Octo/App", &none, &["other", DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", "repo:octo/app", &none, &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example/", "repo:Octo/App", &none, &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", "repo:Octo/App", &none, &["api://azureadtokenexchange"]));
    }

    #[test]
    fn a_credential_takes_a_subject_or_an_expression_never_both_and_never_neither() {
        let expression = Some(("claims['sub'] matches 'repo:octo/*'", 1));
        assert!(matches!(SubjectMatch::parse(Some("s"), None), Ok(SubjectMatch::Exact(_))));
        assert!(matches!(SubjectMatch::parse(None, expression), Ok(SubjectMatch::Expression(_))));
        assert_eq!(SubjectMatch::parse(Some("s"), expression), Err(CredentialError::SubjectAndExpression));
        assert_eq!(SubjectMatch::parse(None, None), Err(CredentialError::NoSubjectOrExpression));
        let bad = SubjectMatch::parse(None, Some(("claims['sub'] is 'x'", 1))).unwrap_err();
        assert!(bad.to_string().contains("at position 14"), "{bad}");
    }

    #[test]
    fn a_flexible_credential_matches_the_verified_claims_and_its_mismatch_is_the_subject() {
        let mut fic = credential("https://issuer.example", "unused", DEFAULT_AUDIENCE);
        fic.matching = SubjectMatch::parse(
            None,
            Some(("claims['sub'] matches 'repo:octo/*' and claims['environment'] eq 'prod'", 1)),
        )
        .unwrap();
        let claims = |environment: &str| {
            let mut claims = Claims::new();
            claims.insert("sub".into(), "repo:octo/app:environment:prod".into());
            claims.insert("environment".into(), environment.into());
            claims
        };
        let sub = "repo:octo/app:environment:prod";
        assert!(fic.matches("https://issuer.example", sub, &claims("prod"), &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", sub, &claims("dev"), &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", sub, &claims("prod"), &["api://other"]));
        assert!(!fic.matches("https://other.example", sub, &claims("prod"), &[DEFAULT_AUDIENCE]), "another issuer");
        let credentials = [fic];
        assert_eq!(Mismatch::of(&credentials, "https://issuer.example", sub, &[DEFAULT_AUDIENCE]), Mismatch::Subject);
    }
}
