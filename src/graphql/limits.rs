//! Limits on GraphQL documents, checked before anything runs and in time linear in the
//! document's size.
//!
//! Two stages. `scan` runs before parsing, because the parser recurses once per nesting
//! level of values (a 4 KB `[[[…]]]` overflows its stack): a flat pass over the text that
//! bounds tokens and bracket nesting and finds NUL characters. `analyze` runs on the parsed
//! document, before async-graphql's own validation: that validation and its depth and
//! complexity checks walk a fragment once per spread, so a document whose fragments each
//! spread the next one twice costs them 2^n. Here every fragment is measured once, in
//! dependency order, and a spread adds the measured figures of its fragment: nothing is
//! ever expanded. Only documents within these limits reach the library.

use std::collections::HashMap;

use async_graphql::{
    Positioned,
    parser::{
        parse_query,
        types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet},
    },
};
use clap::Args;

/// Brackets of any kind open at once. The parser needs a few stack frames per level;
/// this keeps it far from the end of a 2 MiB stack, above any sane selection and value
/// nesting together.
const MAX_NESTING: usize = 64;
/// Introspection fields whose nesting graphql-js limits to 3 (its
/// `MaxIntrospectionDepthRule`): each level multiplies the answer by the number of types.
const INTROSPECTION_LISTS: [&str; 4] = ["fields", "interfaces", "possibleTypes", "inputFields"];
const MAX_INTROSPECTION_DEPTH: u64 = 3;
/// Root fields that verify or hash a password; at most one may run per request.
const PASSWORD_FIELDS: [&str; 2] = ["login", "signup"];

pub const DEFAULT_MAX_TOKENS: usize = 2_000;
pub const DEFAULT_MAX_VALUE_DEPTH: usize = 10;
pub const DEFAULT_MAX_DEPTH: usize = 16;
pub const DEFAULT_MAX_NESTING: usize = 32;
pub const DEFAULT_MAX_ALIASES: u64 = 30;
pub const DEFAULT_MAX_DIRECTIVES: usize = 5;
pub const DEFAULT_MAX_ROOT_FIELDS: u64 = 10;
pub const DEFAULT_MAX_FIELDS: u64 = 1_000;
pub const DEFAULT_MAX_COMPLEXITY: usize = 2_000;

/// The document limits (API.md, "Limits"). Every default lets GraphiQL's full
/// introspection query and every document of the README through with room to spare.
#[derive(Args, Clone, Debug)]
pub struct DocumentLimits {
    /// Most tokens (names, punctuators, values) in a document.
    #[arg(long, env = "MAX_QUERY_TOKENS", global = true, default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,

    /// Deepest nesting of lists and input objects in arguments and variables.
    #[arg(long, env = "MAX_VALUE_DEPTH", global = true, default_value_t = DEFAULT_MAX_VALUE_DEPTH)]
    pub max_value_depth: usize,

    /// Deepest nesting of fields.
    #[arg(long, env = "MAX_QUERY_DEPTH", global = true, default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,

    /// Deepest nesting of selection sets, fragments included.
    #[arg(long, env = "MAX_SELECTION_NESTING", global = true, default_value_t = DEFAULT_MAX_NESTING)]
    pub max_nesting: usize,

    /// Most aliased fields in an operation, fragments expanded.
    #[arg(long, env = "MAX_QUERY_ALIASES", global = true, default_value_t = DEFAULT_MAX_ALIASES)]
    pub max_aliases: u64,

    /// Most directives on one field, fragment spread or inline fragment.
    #[arg(long, env = "MAX_FIELD_DIRECTIVES", global = true, default_value_t = DEFAULT_MAX_DIRECTIVES)]
    pub max_directives: usize,

    /// Most root fields in one mutation (each runs in turn).
    #[arg(long, env = "MAX_MUTATION_FIELDS", global = true, default_value_t = DEFAULT_MAX_ROOT_FIELDS)]
    pub max_root_fields: u64,

    /// Most fields in an operation or fragment once its fragments are expanded.
    #[arg(long, env = "MAX_QUERY_FIELDS", global = true, default_value_t = DEFAULT_MAX_FIELDS)]
    pub max_fields: u64,

    /// Most complexity: every field counts 1, lists count `first` times their fields.
    #[arg(long, env = "MAX_QUERY_COMPLEXITY", global = true, default_value_t = DEFAULT_MAX_COMPLEXITY)]
    pub max_complexity: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            max_value_depth: DEFAULT_MAX_VALUE_DEPTH,
            max_depth: DEFAULT_MAX_DEPTH,
            max_nesting: DEFAULT_MAX_NESTING,
            max_aliases: DEFAULT_MAX_ALIASES,
            max_directives: DEFAULT_MAX_DIRECTIVES,
            max_root_fields: DEFAULT_MAX_ROOT_FIELDS,
            max_fields: DEFAULT_MAX_FIELDS,
            max_complexity: DEFAULT_MAX_COMPLEXITY,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over a limit: `QUERY_TOO_COMPLEX`.
    TooComplex(String),
    /// Not a valid request (NUL characters, fragment cycles): `BAD_USER_INPUT`.
    Invalid(String),
}

fn too_complex(what: impl Into<String>) -> Refused {
    Refused::TooComplex(what.into())
}

fn nul() -> Refused {
    Refused::Invalid("text must not contain NUL characters".into())
}

/// Scan, parse, analyse: each stage only sees what the one before let through.
pub fn check(text: &str, limits: &DocumentLimits) -> Result<ExecutableDocument, Refused> {
    scan(text, limits)?;
    let document = parse_query(text).map_err(|error| Refused::Invalid(error.to_string()))?;
    analyze(&document, limits)?;
    Ok(document)
}

/// The flat pass before parsing: tokens, bracket nesting (values counted from the first
/// open parenthesis: arguments, variable definitions) and NUL characters, in one loop over
/// the bytes. It agrees with the parser on where strings and comments start and end, so
/// no bracket can hide from it.
pub fn scan(text: &str, limits: &DocumentLimits) -> Result<(), Refused> {
    let bytes = text.as_bytes();
    let mut tokens = 0usize;
    let mut open: Vec<u8> = Vec::new();
    // Index in `open` of the outermost open parenthesis.
    let mut values_from: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' | b',' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            // The byte order mark is whitespace to GraphQL.
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                i += 3;
                continue;
            }
            0 => return Err(nul()),
            b'#' => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    if bytes[i] == 0 {
                        return Err(nul());
                    }
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => i = skip_block_string(bytes, i + 3)?,
            b'"' => i = skip_string(bytes, i + 1)?,
            b'{' | b'[' | b'(' => {
                open.push(byte);
                if open.len() > MAX_NESTING {
                    return Err(too_complex(format!(
                        "the document nests brackets deeper than {MAX_NESTING}"
                    )));
                }
                if byte == b'(' && values_from.is_none() {
                    values_from = Some(open.len() - 1);
                }
                if let Some(base) = values_from
                    && open.len() - 1 - base > limits.max_value_depth
                {
                    return Err(too_complex(format!(
                        "values nest deeper than {}",
                        limits.max_value_depth
                    )));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                open.pop();
                if values_from.is_some_and(|base| open.len() <= base) {
                    values_from = None;
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
                {
                    i += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
            }
            // Any other character is one token (a punctuator, or a syntax error to be).
            _ => i += text[i..].chars().next().map_or(1, char::len_utf8),
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(too_complex(format!(
                "the document has more than {} tokens",
                limits.max_tokens
            )));
        }
    }
    Ok(())
}

/// Skips a `"…"` string whose content starts at `i`; returns the index after it. A line
/// break ends it as the parser's grammar does (the parser then reports the error).
fn skip_string(bytes: &[u8], mut i: usize) -> Result<usize, Refused> {
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\n' | b'\r' => return Ok(i),
            0 => return Err(nul()),
            b'\\' if bytes[i + 1..].starts_with(b"u0000") => return Err(nul()),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// Skips a `"""…"""` block string whose content starts at `i` (escapes are not decoded in
/// block strings, except `\"""`).
fn skip_block_string(bytes: &[u8], mut i: usize) -> Result<usize, Refused> {
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\\"\"\"") {
            i += 4;
        } else if bytes[i..].starts_with(b"\"\"\"") {
            return Ok(i + 3);
        } else if bytes[i] == 0 {
            return Err(nul());
        } else {
            i += 1;
        }
    }
    Ok(i)
}

/// Nesting depth of a JSON text (`[` and `{` outside strings), in one flat pass; the
/// variables of a request are checked with it before they are decoded.
pub fn json_nesting(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What a selection set costs once its fragments are expanded. Counts saturate: a
/// fragment bomb reaches `u64::MAX`, not an overflow.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    fields: u64,
    aliases: u64,
    /// Fields directly in the selection set (through fragments, not into sub-selections).
    root_fields: u64,
    password_fields: u64,
    depth: u64,
    nesting: u64,
    introspection_depth: u64,
}

impl Cost {
    /// `other` beside `self` in the same selection set.
    fn beside(self, other: Cost) -> Cost {
        Cost {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            root_fields: self.root_fields.saturating_add(other.root_fields),
            password_fields: self.password_fields.saturating_add(other.password_fields),
            depth: self.depth.max(other.depth),
            nesting: self.nesting.max(other.nesting),
            introspection_depth: self.introspection_depth.max(other.introspection_depth),
        }
    }
}

/// Checks the parsed document against the limits: every operation and every fragment
/// (validation looks at unused fragments too), without expanding a single spread.
pub fn analyze(document: &ExecutableDocument, limits: &DocumentLimits) -> Result<(), Refused> {
    let order = fragments_in_dependency_order(document)?;
    let mut costs: HashMap<&str, Cost> = HashMap::with_capacity(order.len());
    for name in order {
        let Some(fragment) = document.fragments.get(name) else {
            continue;
        };
        let cost = selection_cost(&fragment.node.selection_set, &costs, limits)?;
        check_size(&cost, limits, &format!("fragment {name}"))?;
        costs.insert(name, cost);
    }
    for (name, operation) in document.operations.iter() {
        let what = name.map_or_else(
            || "the operation".to_owned(),
            |name| format!("operation {name}"),
        );
        let cost = selection_cost(&operation.node.selection_set, &costs, limits)?;
        check_size(&cost, limits, &what)?;
        if operation.node.ty == OperationType::Mutation {
            if cost.root_fields > limits.max_root_fields {
                return Err(too_complex(format!(
                    "{what} has more than {} root fields",
                    limits.max_root_fields
                )));
            }
            if cost.password_fields > 1 {
                return Err(too_complex(format!(
                    "{what} asks for more than one login or signup"
                )));
            }
        }
    }
    Ok(())
}

fn check_size(cost: &Cost, limits: &DocumentLimits, what: &str) -> Result<(), Refused> {
    let checks = [
        (
            cost.fields,
            limits.max_fields,
            "fields (fragments expanded)",
        ),
        (cost.aliases, limits.max_aliases, "aliases"),
        (cost.depth, limits.max_depth as u64, "levels of fields"),
        (
            cost.nesting,
            limits.max_nesting as u64,
            "levels of selections",
        ),
        (
            cost.introspection_depth,
            MAX_INTROSPECTION_DEPTH - 1,
            "nested introspection lists",
        ),
    ];
    match checks.iter().find(|(value, limit, _)| value > limit) {
        Some((_, limit, name)) => Err(too_complex(format!("{what} has more than {limit} {name}"))),
        None => Ok(()),
    }
}

/// The cost of a selection set, given the costs of the fragments it may spread. Recursion
/// follows the text only (never a spread), so `scan`'s nesting bound bounds it.
fn selection_cost(
    set: &Positioned<SelectionSet>,
    fragments: &HashMap<&str, Cost>,
    limits: &DocumentLimits,
) -> Result<Cost, Refused> {
    let mut total = Cost::default();
    for selection in &set.node.items {
        if selection.node.directives().len() > limits.max_directives {
            return Err(too_complex(format!(
                "a selection has more than {} directives",
                limits.max_directives
            )));
        }
        let cost = match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let name = field.name.node.as_str();
                if name == "__typename" {
                    check_typename(field)?;
                }
                let inner = selection_cost(&field.selection_set, fragments, limits)?;
                Cost {
                    fields: inner.fields.saturating_add(1),
                    aliases: inner
                        .aliases
                        .saturating_add(u64::from(field.alias.is_some())),
                    root_fields: 1,
                    password_fields: u64::from(PASSWORD_FIELDS.contains(&name)),
                    depth: inner.depth + 1,
                    nesting: inner.nesting + 1,
                    introspection_depth: inner.introspection_depth
                        + u64::from(INTROSPECTION_LISTS.contains(&name)),
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                // An unknown fragment costs nothing here; validation reports it.
                let fragment = fragments.get(name).copied().unwrap_or_default();
                Cost {
                    nesting: fragment.nesting + 1,
                    ..fragment
                }
            }
            Selection::InlineFragment(inline) => {
                let inner = selection_cost(&inline.node.selection_set, fragments, limits)?;
                Cost {
                    nesting: inner.nesting + 1,
                    ..inner
                }
            }
        };
        total = total.beside(cost);
    }
    Ok(total)
}

/// async-graphql's validation skips `__typename` altogether; this is what it would check.
fn check_typename(field: &Field) -> Result<(), Refused> {
    let known_directives = field.directives.iter().all(|directive| {
        let directive = &directive.node;
        matches!(directive.name.node.as_str(), "skip" | "include")
            && directive.arguments.len() == 1
            && directive.arguments[0].0.node == "if"
    });
    let mut names: Vec<&str> = field
        .directives
        .iter()
        .map(|directive| directive.node.name.node.as_str())
        .collect();
    names.sort_unstable();
    let repeated = names.windows(2).any(|pair| pair[0] == pair[1]);
    if !field.arguments.is_empty()
        || !field.selection_set.node.items.is_empty()
        || !known_directives
        || repeated
    {
        return Err(Refused::Invalid(
            "__typename takes no arguments or selections, and only @skip or @include once each"
                .into(),
        ));
    }
    Ok(())
}

/// Fragment names ordered so that every fragment comes after the fragments it spreads;
/// a cycle is refused (as validation would). Iterative: a chain of thousands of fragments
/// must not recurse thousands of times.
fn fragments_in_dependency_order(document: &ExecutableDocument) -> Result<Vec<&str>, Refused> {
    let spreads: HashMap<&str, Vec<&str>> = document
        .fragments
        .iter()
        .map(|(name, fragment)| {
            let mut spread = Vec::new();
            spreads_in(&fragment.node.selection_set, &mut spread);
            (name.as_str(), spread)
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::with_capacity(spreads.len());
    let mut order = Vec::with_capacity(spreads.len());
    for &start in spreads.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // (fragment, index of its next spread to visit)
        let mut stack = vec![(start, 0usize)];
        marks.insert(start, Mark::Visiting);
        while let Some((name, next)) = stack.last_mut() {
            let children = spreads.get(*name).map_or(&[][..], Vec::as_slice);
            if let Some(&child) = children.get(*next) {
                *next += 1;
                match marks.get(child) {
                    Some(Mark::Done) => {}
                    Some(Mark::Visiting) => {
                        return Err(Refused::Invalid(format!(
                            "fragment {child} spreads itself (directly or through others)"
                        )));
                    }
                    None if spreads.contains_key(child) => {
                        marks.insert(child, Mark::Visiting);
                        stack.push((child, 0));
                    }
                    None => {}
                }
            } else {
                marks.insert(name, Mark::Done);
                order.push(*name);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// The fragment names spread anywhere inside `set`.
fn spreads_in<'a>(set: &'a Positioned<SelectionSet>, out: &mut Vec<&'a str>) {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => spreads_in(&field.node.selection_set, out),
            Selection::FragmentSpread(spread) => out.push(spread.node.fragment_name.node.as_str()),
            Selection::InlineFragment(inline) => spreads_in(&inline.node.selection_set, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    /// graphql-js's `getIntrospectionQuery` with every option on, as GraphiQL sends it, with
    /// ten levels of `ofType`.
    pub const INTROSPECTION: &str = r#"
        query IntrospectionQuery {
          __schema {
            description
            queryType { name kind } mutationType { name kind } subscriptionType { name kind }
            types { ...FullType }
            directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
          }
        }
        fragment FullType on __Type {
          kind name description specifiedByURL isOneOf
          fields(includeDeprecated: true) {
            name description args(includeDeprecated: true) { ...InputValue }
            type { ...TypeRef } isDeprecated deprecationReason
          }
          inputFields(includeDeprecated: true) { ...InputValue }
          interfaces { ...TypeRef }
          enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
          possibleTypes { ...TypeRef }
        }
        fragment InputValue on __InputValue {
          name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
        }
        fragment TypeRef on __Type {
          kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
          ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
          kind name ofType { kind name } } } } } } } } } }
        }"#;

    fn limits() -> DocumentLimits {
        DocumentLimits::default()
    }

    fn too_complex(text: &str) -> bool {
        matches!(check(text, &limits()), Err(Refused::TooComplex(_)))
    }

    fn invalid(text: &str) -> bool {
        matches!(check(text, &limits()), Err(Refused::Invalid(_)))
    }

    /// `levels` fragments, each spreading the next one `fan_out` times.
    fn fragment_bomb(levels: usize, fan_out: usize) -> String {
        let mut text = String::from("query { ...F0 }\n");
        for level in 0..levels {
            let spreads = format!(" ...F{}", level + 1).repeat(fan_out);
            text.push_str(&format!(
                "fragment F{level} on Query {{ __typename{spreads} }}\n"
            ));
        }
        text.push_str(&format!("fragment F{levels} on Query {{ __typename }}"));
        text
    }

    #[test]
    fn graphiql_introspection_and_ordinary_documents_pass() {
        for text in [
            INTROSPECTION,
            "{ competitions(first: 20) { totalCount edges { node { id organizer { name } } } } }",
            "mutation($input: LoginInput!) { login(input: $input) { token } }",
            r#"{ competition(id: "x") { title } } # a comment with { [ ( "#,
            r#"{ a: competitions(tag: "}}}]]]") { totalCount } }"#,
            r#"{ competitions(tag: """ block "" \""" { [ """) { totalCount } }"#,
        ] {
            assert!(check(text, &limits()).is_ok(), "{text}");
        }
    }

    #[test]
    fn exponential_fragments_are_refused_without_expanding_them() {
        let started = Instant::now();
        assert!(too_complex(&fragment_bomb(30, 2)));
        assert!(too_complex(&fragment_bomb(200, 3)));
        assert!(started.elapsed() < Duration::from_secs(1));
        // A long chain of single spreads: fine in size, but nested too deep.
        assert!(too_complex(&fragment_bomb(1_000, 1)));
        assert!(check(&fragment_bomb(5, 2), &limits()).is_ok());
    }

    #[test]
    fn fragment_cycles_are_invalid() {
        assert!(invalid("{ ...A } fragment A on Query { ...A }"));
        assert!(invalid(
            "{ ...A } fragment A on Query { ...B } fragment B on Query { __typename ...A }"
        ));
    }

    #[test]
    fn nesting_of_values_and_selections_is_bounded() {
        let deep_list = format!(
            "{{ competition(id: {}1{}) {{ id }} }}",
            "[".repeat(2_000),
            "]".repeat(2_000)
        );
        let deep_object = format!(
            "{{ competition(id: {}1{}) {{ id }} }}",
            "{a:".repeat(2_000),
            "}".repeat(2_000)
        );
        let deep_type = format!(
            "query($v: {}ID{}) {{ __typename }}",
            "[".repeat(2_000),
            "]".repeat(2_000)
        );
        let deep_selection = format!(
            "{{ {}__typename{} }}",
            "a { ".repeat(2_000),
            " }".repeat(2_000)
        );
        let eleven = format!(
            "{{ competition(id: {}1{}) {{ id }} }}",
            "[".repeat(11),
            "]".repeat(11)
        );
        let ten = format!(
            "{{ competition(id: {}1{}) {{ id }} }}",
            "[".repeat(10),
            "]".repeat(10)
        );
        for text in [
            &deep_list,
            &deep_object,
            &deep_type,
            &deep_selection,
            &eleven,
        ] {
            assert!(too_complex(text), "{}", &text[..40]);
        }
        assert!(!too_complex(&ten));
        let seventeen = format!("{{ {}__typename{} }}", "a { ".repeat(16), " }".repeat(16));
        assert!(too_complex(&seventeen));
    }

    #[test]
    fn aliases_directives_tokens_and_root_fields_are_bounded() {
        let aliases: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
        assert!(too_complex(&format!("{{ {aliases} }}")));
        let directives = "@include(if: true) ".repeat(6);
        assert!(too_complex(&format!("{{ __typename {directives} }}")));
        assert!(too_complex(&"{ __typename } ".repeat(1_000)));
        let registers: String = (0..11)
            .map(|i| format!("r{i}: register(competitionId: \"x\") {{ id }} "))
            .collect();
        assert!(too_complex(&format!("mutation {{ {registers} }}")));
    }

    #[test]
    fn at_most_one_password_field_per_mutation_even_through_fragments() {
        let login = r#"login(input: {email: "a@b.co", password: "x"}) { token }"#;
        assert!(check(&format!("mutation {{ {login} }}"), &limits()).is_ok());
        assert!(too_complex(&format!(
            "mutation {{ a: {login} b: {login} }}"
        )));
        assert!(too_complex(&format!(
            "mutation {{ ...L ...L }} fragment L on Mutation {{ {login} }}"
        )));
        assert!(too_complex(&format!(
            "mutation {{ ... on Mutation {{ a: {login} }} b: signup(input: {{}}) {{ token }} }}"
        )));
    }

    #[test]
    fn introspection_lists_nest_at_most_twice() {
        assert!(too_complex(
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
        ));
        assert!(!too_complex(
            "{ __schema { types { fields { type { fields { name } } } } } }"
        ));
    }

    #[test]
    fn nul_characters_are_invalid_wherever_they_hide() {
        for text in [
            "{ competitions(tag: \"a\\u0000\") { totalCount } }",
            "{ competitions(tag: \"a\0\") { totalCount } }",
            "{ competitions(tag: \"\"\"a\0\"\"\") { totalCount } }",
            "{ __typename } # \0",
            "{ __typename \0 }",
        ] {
            assert!(invalid(text), "{text:?}");
        }
    }

    #[test]
    fn json_nesting_skips_strings() {
        assert_eq!(json_nesting(br#"{"a": "[[[{{{", "b": [[1]]}"#), 3);
        assert_eq!(json_nesting(br#"{"a": "\"[[", "b": 1}"#), 1);
        assert_eq!(json_nesting(b"[[[[[[[[[["), 10);
    }

    const VOCABULARY: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "...",
        "fragment",
        "F0",
        "F1",
        "F2",
        "on",
        "Query",
        "Mutation",
        "query",
        "mutation",
        "login",
        "signup",
        "a",
        ":",
        "$v",
        "@include(if: true)",
        "\"s\"",
        "\"\"\"b\"\"\"",
        "\"\\u0041\"",
        "#c\n",
        "1",
        "-1.5e3",
        "__typename",
        "competitions",
        "__schema",
        "types",
        "fields",
        "ofType",
        "=",
        "!",
        "\u{feff}",
        "é",
        "\"",
        "\\",
        "\0",
    ];

    fn token_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(VOCABULARY), 0..400)
            .prop_map(|tokens| tokens.join(" "))
    }

    /// Random fragment graphs: `n` fragments, each spreading some of the others.
    fn fragment_graph() -> impl Strategy<Value = String> {
        (1usize..40).prop_flat_map(|n| {
            prop::collection::vec(prop::collection::vec(0..n, 0..6), n).prop_map(move |spreads| {
                let mut text = String::from("{ ...F0 }\n");
                for (index, targets) in spreads.iter().enumerate() {
                    let body: String = targets.iter().map(|t| format!(" ...F{t}")).collect();
                    text.push_str(&format!(
                        "fragment F{index} on Query {{ __typename{body} }}\n"
                    ));
                }
                text
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever arrives: no panic, an answer well within a second.
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let started = Instant::now();
            let _ = check(&text, &limits());
            let _ = json_nesting(text.as_bytes());
            prop_assert!(started.elapsed() < Duration::from_secs(1));
        }

        #[test]
        fn token_soups_never_panic(text in token_soup()) {
            let started = Instant::now();
            let _ = check(&text, &limits());
            prop_assert!(started.elapsed() < Duration::from_secs(1));
        }

        /// Fragment graphs with cycles and fan-out: refused or accepted, never expanded.
        #[test]
        fn fragment_graphs_are_measured_not_expanded(text in fragment_graph()) {
            let started = Instant::now();
            match check(&text, &limits()) {
                Ok(_) | Err(Refused::TooComplex(_) | Refused::Invalid(_)) => {}
            }
            prop_assert!(started.elapsed() < Duration::from_secs(1));
        }

        /// Deep, well-formed values and selections never reach the parser's recursion.
        #[test]
        fn deep_nesting_is_refused_before_parsing(
            levels in prop::collection::vec(0usize..3, 0..3_000)
        ) {
            const OPEN: [&str; 3] = ["[", "{a: ", "a: b(c: [1]) { "];
            const CLOSE: [&str; 3] = ["]", "}", " __typename }"];
            let opens: String = levels.iter().map(|&level| OPEN[level]).collect();
            let closes: String = levels.iter().rev().map(|&level| CLOSE[level]).collect();
            let text = format!("{{ competition(id: {opens}1{closes}) {{ id }} }}");
            let outcome = check(&text, &limits());
            prop_assert!(
                levels.len() <= DEFAULT_MAX_VALUE_DEPTH
                    || matches!(outcome, Err(Refused::TooComplex(_)))
            );
        }
    }
}
