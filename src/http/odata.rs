//! The part of OData's `$filter` that scripts written against Microsoft Graph send to the log
//! endpoints: comparisons (`eq`, `ne`, `ge`, `gt`, `le`, `lt`) of a property path with a literal
//! (`'quoted'`, with `''` for a quote, or bare: a date-time or a number), joined by `and`.
//! Anything else is refused with a message that says what is understood.

/// One comparison of a `$filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The property path as written (`createdDateTime`, `status/errorCode`).
    pub property: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "ge" => Self::Ge,
            "gt" => Self::Gt,
            "le" => Self::Le,
            "lt" => Self::Lt,
            _ => return None,
        })
    }
}

/// Longer filters are refused (Graph's own limit is of the same order).
const MAX_FILTER_CHARS: usize = 2048;
const MAX_COMPARISONS: usize = 16;

/// Reads `raw` as comparisons joined by `and`.
pub fn parse_filter(raw: &str) -> Result<Vec<Comparison>, String> {
    if raw.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("$filter is longer than {MAX_FILTER_CHARS} characters"));
    }
    let mut rest = raw.trim();
    let mut comparisons = Vec::new();
    loop {
        let (property, after) = word(rest);
        let (op, after) = word(after);
        let op = Op::parse(op).ok_or_else(|| {
            format!("$filter: expected a comparison (eq, ne, ge, gt, le, lt) after '{property}', found '{op}'")
        })?;
        if property.is_empty() || !property.chars().all(|c| c.is_ascii_alphanumeric() || c == '/') {
            return Err(format!("$filter: '{property}' is not a property path ficus understands"));
        }
        let (value, after) = literal(after)?;
        comparisons.push(Comparison { property: property.to_owned(), op, value });
        if comparisons.len() > MAX_COMPARISONS {
            return Err(format!("$filter has more than {MAX_COMPARISONS} comparisons"));
        }
        let (joiner, after) = word(after);
        match joiner.to_ascii_lowercase().as_str() {
            "" => return Ok(comparisons),
            "and" => rest = after,
            other => return Err(format!("$filter: only 'and' joins comparisons, found '{other}'")),
        }
    }
}

/// The next space-separated word and what follows it.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s.find(' ').unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// A quoted literal (`''` is a quote) or a bare one, and what follows it.
fn literal(s: &str) -> Result<(String, &str), String> {
    let s = s.trim_start();
    let Some(quoted) = s.strip_prefix('\'') else {
        let (bare, rest) = word(s);
        if bare.is_empty() {
            return Err("$filter: a comparison has no value".into());
        }
        return Ok((bare.to_owned(), rest));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if chars.peek().map(|(_, next)| *next) == Some('\'') {
            value.push('\'');
            chars.next();
        } else {
            return Ok((value, &quoted[i + 1..]));
        }
    }
    Err("$filter: a quoted value is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_joined_by_and_are_read_with_quoted_and_bare_values() {
        let parsed =
            parse_filter("createdDateTime ge 2026-11-29T10:00:00Z and appId eq 'it''s' and status/errorCode NE 0")
                .unwrap();
        let read: Vec<(&str, Op, &str)> =
            parsed.iter().map(|c| (c.property.as_str(), c.op, c.value.as_str())).collect();
        assert_eq!(
            read,
            [
                ("createdDateTime", Op::Ge, "2026-11-29T10:00:00Z"),
                ("appId", Op::Eq, "it's"),
                ("status/errorCode", Op::Ne, "0")
            ]
        );
    }

    #[test]
    fn what_is_not_a_chain_of_comparisons_is_refused_with_the_reason() {
        for (filter, says) in [
            ("appId has 'x'", "expected a comparison"),
            ("appId eq 'x' or appId eq 'y'", "only 'and'"),
            ("appId eq 'open", "not closed"),
            ("appId eq", "no value"),
            ("startswith(appId,'x') eq true", "not a property path"),
        ] {
            let error = parse_filter(filter).unwrap_err();
            assert!(error.contains(says), "{filter}: {error}");
        }
        assert!(parse_filter(&"a eq 1 and ".repeat(300)).unwrap_err().contains("longer than"));
        assert!(parse_filter(&vec!["a eq 1"; 17].join(" and ")).unwrap_err().contains("more than 16"));
    }
}
