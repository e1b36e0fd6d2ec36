//! Automatic persisted queries, Apollo's protocol: a client sends the SHA-256 of its
//! document in `extensions.persistedQuery`; the server answers from the documents it has
//! seen, or with `PERSISTED_QUERY_NOT_FOUND`, and the client sends the document once more
//! with the hash, which the server checks before keeping it.

use std::sync::Arc;

use quick_cache::{Weighter, sync::Cache};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult, bad_input};

/// Total text of the documents kept; the least recently used go first.
const KEPT_TEXT_BYTES: u64 = 8 * 1024 * 1024;
const EXPECTED_DOCUMENTS: usize = 2_048;

#[derive(Clone)]
struct TextLength;

impl Weighter<String, Arc<str>> for TextLength {
    fn weight(&self, hash: &String, text: &Arc<str>) -> u64 {
        (hash.len() + text.len()) as u64
    }
}

pub struct PersistedQueries(Cache<String, Arc<str>, TextLength>);

impl Default for PersistedQueries {
    fn default() -> Self {
        Self(Cache::with_weighter(
            EXPECTED_DOCUMENTS,
            KEPT_TEXT_BYTES,
            TextLength,
        ))
    }
}

impl PersistedQueries {
    /// The document of a request: the one it carries (checked against its hash, and kept,
    /// when it names one), or the one its hash names.
    pub fn resolve(
        &self,
        query: Option<String>,
        extensions: &Map<String, Value>,
    ) -> AppResult<String> {
        let Some(persisted) = extensions.get("persistedQuery") else {
            return query.ok_or_else(|| bad_input("a query is required"));
        };
        let hash = match (persisted.get("version"), persisted.get("sha256Hash")) {
            (Some(Value::Number(version)), Some(Value::String(hash)))
                if version.as_u64() == Some(1) =>
            {
                hash.to_ascii_lowercase()
            }
            _ => {
                return Err(bad_input(
                    "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"…\"}",
                ));
            }
        };
        match query {
            Some(query) => {
                if hex::encode(Sha256::digest(query.as_bytes())) != hash {
                    return Err(bad_input(
                        "the document does not match extensions.persistedQuery.sha256Hash",
                    ));
                }
                self.0.insert(hash, Arc::from(query.as_str()));
                Ok(query)
            }
            None => self
                .0
                .get(&hash)
                .map(|query| query.to_string())
                .ok_or(AppError::PersistedQueryNotFound),
        }
    }
}
