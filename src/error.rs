//! The domain's one error type. Every variant maps to one `extensions.code` of API.md; the
//! mapping to GraphQL lives in `graphql::errors`, so domain code stays free of async-graphql.
//!
//! `Display` is the message a client sees: internal details live only in the
//! `Internal`/`Unavailable` payloads, which are logged, never shown.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub type AppResult<T> = Result<T, AppError>;

/// `Clone` because DataLoader shares one failure between every waiting field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadInput(String),
    /// The document exceeds a limit (refused before anything ran).
    #[error("{0}")]
    TooComplex(String),
    #[error("Too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Apollo's persisted-query link looks for this message (and the code).
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("You are already registered for this competition")]
    AlreadyRegistered,
    #[error("The competition has no seat left")]
    CompetitionFull,
    #[error("Registration for this competition is closed")]
    RegistrationClosed,
    #[error("Request already in progress")]
    RequestInProgress,
    #[error("This Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("A backing service is unavailable; retry later")]
    Unavailable(String),
    /// The server refused to take the request on (load shedding, time budget).
    #[error("{0}")]
    Overloaded(&'static str),
    #[error("Internal server error")]
    Internal(String),
}

impl AppError {
    /// A valid token whose account was deleted.
    pub const ACCOUNT_GONE: Self = Self::Unauthenticated("The account no longer exists");

    /// Every `extensions.code` there is.
    pub const CODES: [&'static str; 15] = [
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "QUERY_TOO_COMPLEX",
        "RATE_LIMITED",
        "PERSISTED_QUERY_NOT_FOUND",
        "NOT_FOUND",
        "CONFLICT",
        "ALREADY_REGISTERED",
        "COMPETITION_FULL",
        "REGISTRATION_CLOSED",
        "REQUEST_IN_PROGRESS",
        "IDEMPOTENCY_KEY_REUSED",
        "SERVICE_UNAVAILABLE",
        "INTERNAL",
    ];

    /// The `extensions.code` of API.md for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::BadInput(_) => "BAD_USER_INPUT",
            Self::TooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::AlreadyRegistered => "ALREADY_REGISTERED",
            Self::CompetitionFull => "COMPETITION_FULL",
            Self::RegistrationClosed => "REGISTRATION_CLOSED",
            Self::RequestInProgress => "REQUEST_IN_PROGRESS",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::Unavailable(_) | Self::Overloaded(_) => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// Detail for the server log only (never sent to clients).
    pub fn internal_detail(&self) -> Option<&str> {
        match self {
            Self::Unavailable(detail) | Self::Internal(detail) => Some(detail),
            _ => None,
        }
    }
}

pub fn bad_input(message: impl Into<String>) -> AppError {
    AppError::BadInput(message.into())
}

pub fn internal(detail: impl std::fmt::Display) -> AppError {
    AppError::Internal(detail.to_string())
}

/// How Postgres words the errors of a connection it is ending (SQLSTATE 57P01–57P05, 25P03),
/// or refusing (57P03). diesel keeps the message of a server error but not its SQLSTATE.
const CONNECTION_ENDED: [&str; 3] = [
    "terminating connection",
    "the database system is",
    "server closed the connection",
];

/// True when `error` means the connection to Postgres was lost or refused (a server
/// shutdown, a dropped socket, a broken transaction): the statement did not run to the
/// end, the transaction was rolled back, and a retry may well succeed.
pub fn connection_lost(error: &DieselError) -> bool {
    match error {
        // No SQLSTATE at all: the socket, not the server, failed.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => CONNECTION_ENDED
            .iter()
            .any(|start| info.message().starts_with(start)),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => connection_lost(commit_error),
        _ => false,
    }
}

/// A database error nobody handled more specifically: a lost connection means Postgres is
/// unavailable (nothing was written); anything else is a bug.
impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        if connection_lost(&error) {
            AppError::Unavailable(error.to_string())
        } else {
            AppError::Internal(error.to_string())
        }
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for AppError {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        AppError::Unavailable(format!("postgres pool: {error}"))
    }
}

impl From<bb8_redis::bb8::RunError<bb8_redis::redis::RedisError>> for AppError {
    fn from(error: bb8_redis::bb8::RunError<bb8_redis::redis::RedisError>) -> Self {
        AppError::Unavailable(format!("redis pool: {error}"))
    }
}

impl From<bb8_redis::redis::RedisError> for AppError {
    fn from(error: bb8_redis::redis::RedisError) -> Self {
        AppError::Unavailable(format!("redis: {error}"))
    }
}

/// True when `error` is a violation of the named unique or check constraint.
pub fn violates(error: &DieselError, constraint: &str) -> bool {
    matches!(error, DieselError::DatabaseError(_, info) if info.constraint_name() == Some(constraint))
}
