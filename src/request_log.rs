//! One log line per request (method, path, status, latency, GraphQL operation, request
//! id), and the request id itself: the caller's `x-request-id` when it is a sane one,
//! else a new one; returned in the response and carried by every line logged meanwhile.
//! The query string is never logged (a GET's variables may hold anything).

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Response},
    middleware::Next,
};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::TraceLayer,
};
use tracing::{Span, field};
use uuid::Uuid;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id taken from a caller.
const MAX_REQUEST_ID: usize = 128;

/// Middleware: gives every request an id (see the module's doc) and returns it.
pub async fn request_id(mut request: Request, next: Next) -> axum::response::Response {
    let given = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_sane(value.as_bytes()))
        .cloned();
    let id = match given {
        Some(id) => id,
        None => HeaderValue::from_str(&Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    };
    request.headers_mut().insert(&REQUEST_ID, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(&REQUEST_ID, id);
    response
}

/// Short, and nothing but letters, digits and `-_.:`: safe in any log format.
fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(byte))
}

type Trace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    (),
    fn(&Response<axum::body::Body>, Duration, &Span),
>;

/// The request's span (the GraphQL handler records `operation` in it) and its line.
pub fn layer() -> Trace {
    TraceLayer::new_for_http()
        .make_span_with(span as fn(&Request) -> Span)
        .on_request(())
        .on_response(answered as fn(&Response<axum::body::Body>, Duration, &Span))
}

fn span(request: &Request) -> Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        request_id = id,
        operation = field::Empty,
    )
}

fn answered(response: &Response<axum::body::Body>, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "answered"
    );
}
