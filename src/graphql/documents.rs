//! Documents are checked against the limits and parsed once, then cached by their text.
//!
//! Clients send the same few documents over and over, with only the variables changing, and
//! async-graphql's parser is one of the larger costs of a small request. The cache holds
//! the outcome, refusals included, so a repeated hostile document costs a lookup.
//! Long documents are scanned and parsed on the blocking pool, a bounded number at a time,
//! so that a client sending large documents cannot occupy the async workers.
//!
//! A cached document also remembers when async-graphql's validation has passed it, if that
//! settles it for every later request (see `Prepared`): those skip the rules.

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::parser::types::ExecutableDocument;
use quick_cache::{Weighter, sync::Cache};
use tokio::sync::Semaphore;

use super::limits::{self, DocumentLimits, Refused};

/// Longer documents are checked every time: they are rare, and would crowd out the rest.
const MAX_CACHED_LEN: usize = 8 * 1024;
/// Total text length of the cached documents; their syntax trees take a few times more.
const CACHED_TEXT_BYTES: u64 = 1024 * 1024;
const EXPECTED_DOCUMENTS: usize = 256;
/// Documents longer than this are scanned and parsed off the async workers.
const BLOCKING_LEN: usize = 4 * 1024;

/// Parses of long documents running at once: one per core.
static PARSING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

type Checked = Result<Arc<Prepared>, Refused>;

/// A document within the limits, parsed.
pub struct Prepared {
    pub document: ExecutableDocument,
    /// No operation declares a variable. Validation reads a request's variables only
    /// through the variables the operations declare, so such a document passes or fails
    /// validation the same way for every request.
    variable_free: bool,
    /// Validation passed it once (only ever set when `variable_free`).
    validated: AtomicBool,
}

impl Prepared {
    fn new(document: ExecutableDocument) -> Self {
        let variable_free = document
            .operations
            .iter()
            .all(|(_, operation)| operation.node.variable_definitions.is_empty());
        Self {
            document,
            variable_free,
            validated: AtomicBool::new(false),
        }
    }

    /// True when validating this document again could not change its outcome.
    pub fn validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    /// Records that validation passed it (its operation ran).
    pub fn passed_validation(&self) {
        if self.variable_free {
            self.validated.store(true, Ordering::Relaxed);
        }
    }
}

pub struct DocumentCache(Cache<String, Checked, TextLength>);

#[derive(Clone)]
struct TextLength;

impl Weighter<String, Checked> for TextLength {
    fn weight(&self, text: &String, _: &Checked) -> u64 {
        text.len() as u64
    }
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self(Cache::with_weighter(
            EXPECTED_DOCUMENTS,
            CACHED_TEXT_BYTES,
            TextLength,
        ))
    }
}

impl DocumentCache {
    /// The parsed document, or why it is refused (over a limit, or not valid GraphQL).
    pub async fn prepare(&self, text: &str, limits: &DocumentLimits) -> Checked {
        if let Some(checked) = self.0.get(text) {
            return checked;
        }
        let checked = if text.len() > BLOCKING_LEN {
            let permit = PARSING.acquire().await;
            let (owned, limits) = (text.to_owned(), limits.clone());
            let checked = tokio::task::spawn_blocking(move || check(&owned, &limits)).await;
            drop(permit);
            match checked {
                Ok(checked) => checked,
                Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
                // Only a runtime shutting down cancels a blocking task.
                Err(_) => Err(Refused::TooComplex("the server is shutting down".into())),
            }
        } else {
            check(text, limits)
        };
        if text.len() <= MAX_CACHED_LEN {
            self.0.insert(text.to_owned(), checked.clone());
        }
        checked
    }
}

fn check(text: &str, limits: &DocumentLimits) -> Checked {
    limits::check(text, limits).map(|document| Arc::new(Prepared::new(document)))
}
