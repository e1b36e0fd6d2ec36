//! Documents are checked against the limits and parsed once, then cached by their text.
//!
//! Clients send the same few documents over and over, with only the variables changing, and
//! async-graphql's parser is one of the larger costs of a small request. The cache holds
//! the outcome, refusals included, so a repeated hostile document costs a lookup.
//! Long documents are scanned and parsed on the blocking pool, a bounded number at a time,
//! so that a client sending large documents cannot occupy the async workers.
//!
//! A cached document also remembers when async-graphql's validation has passed it; a later
//! request for which that settles it (see `Settles`) skips the rules.

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{
    Name, Value, Variables,
    parser::types::{BaseType, ExecutableDocument, Type},
};
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
    /// When passing validation once settles it for a later request.
    settles: Settles,
    /// Validation passed it once (only ever set when it can settle anything).
    validated: AtomicBool,
}

/// Validation reads a request's variables only where the operation uses them as
/// arguments, and checks their values there against the arguments' types; every other
/// rule reads the document alone. So once a document has passed, a later request passes
/// too when its variables are valid wherever they may be used.
enum Settles {
    /// No operation declares a variable: every request passes.
    Always,
    /// One operation, whose every variable is an `ID`, `String` or `Boolean`, nullable or
    /// not (a position that accepts it has the same scalar, the validation rules make sure,
    /// and a value of that scalar is valid there, even where the position is non-null): the
    /// requests whose values are all present, not null, and of their scalar. A null or
    /// missing value is validated, as it may be refused where a default stood for it.
    WhenScalarsValid(Vec<(Name, Scalar)>),
    /// Anything else: validated every time.
    Never,
}

#[derive(Clone, Copy)]
enum Scalar {
    Id,
    String,
    Boolean,
}

impl Scalar {
    fn of(ty: &Type) -> Option<Self> {
        match &ty.base {
            BaseType::Named(name) => match name.as_str() {
                "ID" => Some(Self::Id),
                "String" => Some(Self::String),
                "Boolean" => Some(Self::Boolean),
                _ => None,
            },
            BaseType::List(_) => None,
        }
    }

    /// Whether validation would accept `value` for this scalar (as async-graphql's own
    /// scalars do: an `ID` is a string or an integer).
    fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (Self::Id, Value::Number(number)) => number.is_i64(),
            (Self::Id | Self::String, Value::String(_)) => true,
            (Self::Boolean, Value::Boolean(_)) => true,
            _ => false,
        }
    }
}

impl Settles {
    fn of(document: &ExecutableDocument) -> Self {
        let mut declared = document
            .operations
            .iter()
            .map(|(_, operation)| &operation.node.variable_definitions);
        if declared.clone().all(Vec::is_empty) {
            return Self::Always;
        }
        let (Some(definitions), None) = (declared.next(), declared.next()) else {
            return Self::Never;
        };
        definitions
            .iter()
            .map(|definition| {
                let definition = &definition.node;
                Scalar::of(&definition.var_type.node)
                    .map(|scalar| (definition.name.node.clone(), scalar))
            })
            .collect::<Option<Vec<_>>>()
            .map_or(Self::Never, Self::WhenScalarsValid)
    }

    fn allows(&self, variables: &Variables) -> bool {
        match self {
            Self::Always => true,
            Self::WhenScalarsValid(scalars) => scalars.iter().all(|(name, scalar)| {
                variables
                    .get(name)
                    .is_some_and(|value| scalar.accepts(value))
            }),
            Self::Never => false,
        }
    }
}

impl Prepared {
    fn new(document: ExecutableDocument) -> Self {
        Self {
            settles: Settles::of(&document),
            document,
            validated: AtomicBool::new(false),
        }
    }

    /// True when validating this document again, with these variables, could not change
    /// its outcome: it passed before, and that settles it for them.
    pub fn validated(&self, variables: &Variables) -> bool {
        self.validated.load(Ordering::Relaxed) && self.settles.allows(variables)
    }

    /// Records that validation passed it (its operation ran).
    pub fn passed_validation(&self) {
        if !matches!(self.settles, Settles::Never) {
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
