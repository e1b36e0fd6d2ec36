//! Input rules of API.md, shared by every domain module.

use chrono::{DateTime, Datelike, TimeDelta, Utc};

use crate::error::{AppError, AppResult, bad_input};

pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_PASSWORD_LEN: usize = 128;
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=MAX_PASSWORD_LEN;

/// Trimmed, lower-cased and checked: the form stored and compared everywhere.
pub fn normalize_email(raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > MAX_EMAIL_LEN {
        return Err(bad_input(format!(
            "email must be at most {MAX_EMAIL_LEN} characters"
        )));
    }
    // RFC 5322 syntax, plus a dotted domain: `user@localhost` is no address to mail.
    let domain_has_dot = email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
    if !email_address::EmailAddress::is_valid(&email) || !domain_has_dot || email.contains('"') {
        return Err(bad_input("email is not a valid address"));
    }
    Ok(email)
}

type CharRule = fn(char) -> bool;

pub fn check_password(password: &str) -> AppResult<()> {
    let length = password.chars().count();
    if !PASSWORD_LEN.contains(&length) {
        return Err(bad_input("password must be 8 to 128 characters"));
    }
    let rules: [(&str, CharRule); 4] = [
        ("a lower-case letter", char::is_lowercase),
        ("an upper-case letter", char::is_uppercase),
        ("a digit", |c| c.is_ascii_digit()),
        ("a symbol", |c| !c.is_alphanumeric() && !c.is_whitespace()),
    ];
    match rules.iter().find(|(_, rule)| !password.chars().any(rule)) {
        Some((missing, _)) => Err(bad_input(format!("password must contain {missing}"))),
        None => Ok(()),
    }
}

/// Trims `value` and checks its length in characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> AppResult<String> {
    let value = value.trim();
    let length = value.chars().count();
    if length < min || length > max {
        let rule = if min == 0 {
            format!("at most {max}")
        } else {
            format!("{min} to {max}")
        };
        return Err(bad_input(format!("{field} must be {rule} characters")));
    }
    Ok(value.to_owned())
}

/// A UUID given by a client as a GraphQL `ID`.
pub fn parse_id(field: &str, raw: &str) -> AppResult<uuid::Uuid> {
    uuid::Uuid::parse_str(raw.trim())
        .map_err(|_| AppError::BadInput(format!("{field} is not a valid ID")))
}

/// Dates must lie within 0001–9999 (API.md): what RFC 3339 can write with a four-digit
/// year and Postgres can store. Derived dates are checked with it too.
pub fn date(field: &str, at: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(bad_input(format!(
            "{field} must lie within the years 0001 to 9999"
        )))
    }
}

/// `at + by`, refused like an input out of range when it leaves 0001–9999.
pub fn date_plus(field: &str, at: DateTime<Utc>, by: TimeDelta) -> AppResult<DateTime<Utc>> {
    let sum = at
        .checked_add_signed(by)
        .ok_or_else(|| bad_input(format!("{field} must lie within the years 0001 to 9999")))?;
    date(field, sum)
}
