//! Parsed GraphQL documents, cached by their text.
//!
//! Clients send the same few documents over and over, with only the variables changing, and
//! async-graphql's parser is one of the larger costs of a small request. Validation still
//! runs on every request (it depends on the variables); only parsing is skipped.

use std::sync::Arc;

use async_graphql::{
    Request,
    parser::{parse_query, types::ExecutableDocument},
};
use quick_cache::{Weighter, sync::Cache};

/// Longer documents are parsed every time: they are rare, and would crowd out the rest.
const MAX_CACHED_LEN: usize = 8 * 1024;
/// Total text length of the cached documents; their syntax trees take a few times more.
const CACHED_TEXT_BYTES: u64 = 1024 * 1024;
const EXPECTED_DOCUMENTS: usize = 256;

pub struct DocumentCache(Cache<String, Arc<ExecutableDocument>, TextLength>);

#[derive(Clone)]
struct TextLength;

impl Weighter<String, Arc<ExecutableDocument>> for TextLength {
    fn weight(&self, text: &String, _: &Arc<ExecutableDocument>) -> u64 {
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
    /// Hands `request` its parsed document. A document that does not parse is left to the
    /// executor, which reports the syntax error as usual.
    pub fn parse_into(&self, request: &mut Request) {
        if request.query.len() > MAX_CACHED_LEN {
            return;
        }
        let document = match self.0.get(request.query.as_str()) {
            Some(document) => document,
            None => {
                let Ok(parsed) = parse_query(&request.query) else {
                    return;
                };
                let document = Arc::new(parsed);
                self.0.insert(request.query.clone(), Arc::clone(&document));
                document
            }
        };
        request.set_parsed_query(ExecutableDocument::clone(&document));
    }
}
