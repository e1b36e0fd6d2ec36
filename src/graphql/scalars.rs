//! Our own `DateTime` scalar: strict RFC 3339 with a four-digit year, in and out.
//!
//! async-graphql's chrono scalar accepts whatever `chrono` parses, including years such as
//! +262142 that Postgres cannot store and date arithmetic overflows on; this one refuses
//! them at the door (`BAD_USER_INPUT`), with the rule kept in `validation`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::Utc;

use crate::validation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// An instant: RFC 3339 with a four-digit year (0001–9999), e.g. `2030-01-15T18:00:00Z`.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let parsed = chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|_| InputValueError::custom("expected an RFC 3339 date-time"))?
            .with_timezone(&Utc);
        validation::date("a date", parsed)
            .map(Self)
            .map_err(|error| InputValueError::custom(error.to_string()))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(at: chrono::DateTime<Utc>) -> Self {
        Self(at)
    }
}
