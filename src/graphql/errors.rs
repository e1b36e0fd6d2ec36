//! The one place where failures become GraphQL errors with an `extensions.code`.
//!
//! Resolvers use plain `?`: async-graphql keeps the original error as the `source`, and
//! `classify` reads it back once the request has run. (Not as an async-graphql extension:
//! any extension puts every field's resolution through the extension chain, which cost
//! about a fifth of the `reads` throughput.) Errors of async-graphql itself (syntax, validation, coercion,
//! limits) have no source and are the client's fault; any other source is a bug whose text
//! stays in the log.

use std::sync::Arc;

use async_graphql::{Response, ServerError};

use crate::error::AppError;

const INTERNAL_MESSAGE: &str = "Internal server error";
/// async-graphql's own limit errors (the complexity limit is only checked there).
const LIBRARY_LIMITS: [&str; 3] = [
    "Query is too complex.",
    "Query is nested too deep.",
    "The recursion depth of the query cannot be greater than",
];

/// Gives `error` its code and a message safe for clients.
pub fn classify(error: &mut ServerError) {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get("code").is_some());
    let code = match error.source.as_deref() {
        Some(source) => match source.downcast_ref::<AppError>() {
            Some(app_error) => {
                if let Some(detail) = app_error.internal_detail() {
                    tracing::error!(code = app_error.code(), path = ?error.path, %detail, "request failed");
                }
                error.message = app_error.to_string();
                if let AppError::RateLimited { retry_after_secs } = app_error {
                    error
                        .extensions
                        .get_or_insert_with(Default::default)
                        .set("retryAfter", *retry_after_secs);
                }
                app_error.code()
            }
            None => {
                tracing::error!(path = ?error.path, detail = %error.message, "unmapped error");
                error.message = INTERNAL_MESSAGE.to_owned();
                "INTERNAL"
            }
        },
        None if has_code => return,
        None if LIBRARY_LIMITS
            .iter()
            .any(|limit| error.message.starts_with(limit)) =>
        {
            "QUERY_TOO_COMPLEX"
        }
        None => "BAD_USER_INPUT",
    };
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
}

/// A response for a request refused before execution (e.g. a bad bearer token).
pub fn refusal(error: AppError) -> Response {
    let mut server_error = ServerError::new(error.to_string(), None);
    server_error.source = Some(Arc::new(error));
    classify(&mut server_error);
    Response::from_errors(vec![server_error])
}
