//! Federated identity credentials: which external identity (issuer + subject, presenting an
//! assertion for an audience) may act as an application or a user-assigned identity.
//!
//! Rules (Microsoft Graph's): `name` 3-120 characters of letters, digits, `-` and `_`, starting
//! with a letter or digit, unique per owner and immutable; `issuer` an https URL of at most 600
//! characters (`http` only for loopback, and only when development allows it); `subject` 1-600
//! characters; `audiences` exactly one value of at most 600 characters; `description` at most 600;
//! at most [`MAX_PER_OWNER`] per owner; (issuer, subject) unique per owner. Matching is exact and
//! case-sensitive.

use std::fmt;

use url::Url;

use super::ids::ObjectId;

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

/// The fields a credential is created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFederatedCredential {
    pub name: CredentialName,
    pub issuer: Issuer,
    pub subject: Subject,
    pub audience: Audience,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub id: ObjectId,
    pub owner: CredentialOwner,
    pub name: CredentialName,
    pub issuer: Issuer,
    pub subject: Subject,
    pub audience: Audience,
    pub description: Option<String>,
}

impl FederatedCredential {
    /// Exact, case-sensitive match on issuer and subject; `audiences` (the assertion's `aud`)
    /// must contain this credential's audience.
    pub fn matches(&self, issuer: &str, subject: &str, audiences: &[&str]) -> bool {
        self.issuer.as_str() == issuer
            && self.subject.as_str() == subject
            && audiences.iter().any(|a| *a == self.audience.as_str())
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

    #[test]
    fn matching_is_exact_and_case_sensitive() {
        let fic = FederatedCredential {
            id: ObjectId::random(),
            owner: CredentialOwner::Application(ObjectId::random()),
            name: CredentialName::parse("gh").unwrap_or_else(|_| CredentialName("gh".into())),
            issuer: Issuer::parse("https://issuer.example", STRICT).unwrap(),
            subject: Subject::parse("repo:Octo/App").unwrap(),
            audience: Audience::parse(DEFAULT_AUDIENCE).unwrap(),
            description: None,
        };
        assert!(fic.matches("https://issuer.example", "repo:Octo/App", &["other", DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", "repo:octo/app", &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example/", "repo:Octo/App", &[DEFAULT_AUDIENCE]));
        assert!(!fic.matches("https://issuer.example", "repo:Octo/App", &["api://azureadtokenexchange"]));
    }
}
