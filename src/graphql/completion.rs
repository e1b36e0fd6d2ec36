//! Spec-exact results, laid over async-graphql's.
//!
//! async-graphql 7.2 drops a field whose resolver failed from its parent object (even a
//! non-null one, so the parent breaks its own type), and puts an object's keys in the order
//! its fields completed. The GraphQL spec wants the failed field null, a null in a non-null
//! position to null the nearest nullable ancestor (up to `data` itself), and keys in the
//! order of the selection set. This walks the response once, beside the operation's
//! selection set and the schema's types, and rebuilds it so. The errors are left as they
//! are: the spec adds none for the propagated nulls.
//!
//! The type of every field comes from the schema's own introspection, read once.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
    sync::LazyLock,
};

use async_graphql::{
    Name, Positioned, Value, Variables,
    indexmap::IndexMap,
    parser::types::{
        Directive, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
    },
};

/// `__typename`'s type, on every object.
static TYPENAME: LazyLock<TypeRef> =
    LazyLock::new(|| TypeRef::NonNull(Box::new(TypeRef::Named("String".into()))));

/// A field's type, as introspection tells it.
#[derive(Debug, Clone)]
enum TypeRef {
    NonNull(Box<TypeRef>),
    List(Box<TypeRef>),
    Named(String),
}

/// What the walk needs of the schema: every object's fields and their types, which types
/// are abstract, the root types, and a few values of our own that replace the library's.
pub struct Shapes {
    fields: HashMap<String, HashMap<String, TypeRef>>,
    abstract_types: HashSet<String>,
    query: String,
    mutation: Option<String>,
    subscription: Option<String>,
    /// `__Schema.description`: async-graphql answers with a fixed sentence of its own.
    schema_description: &'static str,
}

const SHAPES_QUERY: &str = "{ __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { name kind fields(includeDeprecated: true) { name type { ...Ref } } }
  } }
  fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType {
    kind name ofType { kind name ofType { kind name } } } } } }";

impl Shapes {
    /// Reads the shapes from the schema's introspection (see `graphql::schema`).
    pub async fn read(schema: &super::AppSchema, schema_description: &'static str) -> Self {
        let response = schema.execute(SHAPES_QUERY).await;
        let data = response.data.into_json().unwrap_or_default();
        let root = &data["__schema"];
        let mut fields: HashMap<String, HashMap<String, TypeRef>> = HashMap::new();
        let mut abstract_types = HashSet::new();
        for ty in root["types"].as_array().into_iter().flatten() {
            let name = ty["name"].as_str().unwrap_or_default().to_owned();
            if matches!(ty["kind"].as_str(), Some("INTERFACE" | "UNION")) {
                abstract_types.insert(name.clone());
            }
            let of_type = fields.entry(name).or_default();
            for field in ty["fields"].as_array().into_iter().flatten() {
                if let (Some(field_name), Some(type_ref)) =
                    (field["name"].as_str(), type_ref(&field["type"]))
                {
                    of_type.insert(field_name.to_owned(), type_ref);
                }
            }
        }
        let query = root["queryType"]["name"]
            .as_str()
            .unwrap_or("Query")
            .to_owned();
        // Introspection's own root fields are not listed among the query type's fields.
        if let Some(query_fields) = fields.get_mut(&query) {
            query_fields.insert(
                "__schema".into(),
                TypeRef::NonNull(Box::new(TypeRef::Named("__Schema".into()))),
            );
            query_fields.insert("__type".into(), TypeRef::Named("__Type".into()));
        }
        Self {
            fields,
            abstract_types,
            query,
            mutation: root["mutationType"]["name"].as_str().map(str::to_owned),
            subscription: root["subscriptionType"]["name"].as_str().map(str::to_owned),
            schema_description,
        }
    }

    /// Rebuilds `data` of the operation that ran: failed fields null, nulls propagated to
    /// the nearest nullable ancestor, keys in selection order.
    pub fn complete(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
        data: Value,
        had_errors: bool,
    ) -> Value {
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(operation), _) => operation,
            (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
                Some(operation) => operation,
                None => return data,
            },
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                match operations.values().next() {
                    Some(operation) => operation,
                    None => return data,
                }
            }
            _ => return data,
        };
        let root = match operation.node.ty {
            OperationType::Query => Some(self.query.as_str()),
            OperationType::Mutation => self.mutation.as_deref(),
            OperationType::Subscription => self.subscription.as_deref(),
        };
        let (Some(root), Value::Object(object)) = (root, data) else {
            return Value::Null;
        };
        let walk = Walk {
            shapes: self,
            document,
            variables,
            collected: RefCell::default(),
        };
        let root_sets = [&operation.node.selection_set];
        // Most results are already exact (no field failed, no field came late): checking
        // costs no allocation, rebuilding would.
        if !had_errors && walk.is_exact(root, &root_sets, &object) {
            return Value::Object(object);
        }
        match walk.object(root, &root_sets, object) {
            Some(object) => Value::Object(object),
            None => Value::Null,
        }
    }
}

fn type_ref(json: &serde_json::Value) -> Option<TypeRef> {
    match json["kind"].as_str()? {
        "NON_NULL" => Some(TypeRef::NonNull(Box::new(type_ref(&json["ofType"])?))),
        "LIST" => Some(TypeRef::List(Box::new(type_ref(&json["ofType"])?))),
        _ => Some(TypeRef::Named(json["name"].as_str()?.to_owned())),
    }
}

struct Walk<'a> {
    shapes: &'a Shapes,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The fields collected for a type and selection sets, once per walk: every item of a
    /// list is the same selection on the same type.
    collected: RefCell<HashMap<SelectionOn<'a>, Rc<[Collected<'a>]>>>,
}

/// A type and the addresses of the selection sets selected on it.
type SelectionOn<'a> = (&'a str, Vec<usize>);

/// A response key, the field it answers, the field's type (`None` when introspection
/// does not know it, which validation rules out) and the selection sets merged under it.
struct Collected<'a> {
    key: &'a Name,
    field: &'a str,
    ty: Option<&'a TypeRef>,
    sets: Vec<&'a Positioned<SelectionSet>>,
}

impl<'a> Walk<'a> {
    /// An object of type `type_name`; `None` when a non-null field of it is null, which
    /// makes the object itself null.
    fn object(
        &self,
        type_name: &'a str,
        sets: &[&'a Positioned<SelectionSet>],
        mut data: IndexMap<Name, Value>,
    ) -> Option<IndexMap<Name, Value>> {
        let collected = self.collected_fields(type_name, sets);
        let mut completed = IndexMap::with_capacity(collected.len());
        for Collected {
            key,
            field,
            ty,
            sets,
        } in collected.iter()
        {
            // The order of `data` no longer matters: take values out in O(1).
            let value = data.swap_remove(*key).unwrap_or(Value::Null);
            let value = if type_name == "__Schema" && *field == "description" {
                Value::String(self.shapes.schema_description.to_owned())
            } else {
                value
            };
            let value = match ty {
                Some(field_type) => self.value(field_type, sets, value)?,
                // Unknown to introspection (cannot happen after validation): as it came.
                None => value,
            };
            completed.insert((*key).clone(), value);
        }
        Some(completed)
    }

    /// True when `data` is already what `object` would make of it: every selected key, in
    /// order, no null in a non-null position, and no value of ours to put in.
    fn is_exact(
        &self,
        type_name: &'a str,
        sets: &[&'a Positioned<SelectionSet>],
        data: &IndexMap<Name, Value>,
    ) -> bool {
        let collected = self.collected_fields(type_name, sets);
        collected.len() == data.len()
            && type_name != "__Schema"
            && collected
                .iter()
                .zip(data)
                .all(|(Collected { key, ty, sets, .. }, (name, value))| {
                    *key == name
                        && match ty {
                            Some(field_type) => self.is_exact_value(field_type, sets, value),
                            None => true,
                        }
                })
    }

    fn is_exact_value(
        &self,
        ty: &'a TypeRef,
        sets: &[&'a Positioned<SelectionSet>],
        value: &Value,
    ) -> bool {
        match (ty, value) {
            (TypeRef::NonNull(_), Value::Null) => false,
            (TypeRef::NonNull(inner), value) => self.is_exact_value(inner, sets, value),
            (TypeRef::List(inner), Value::List(items)) => items
                .iter()
                .all(|item| self.is_exact_value(inner, sets, item)),
            (TypeRef::Named(name), Value::Object(object))
                if !sets.is_empty() && !self.shapes.abstract_types.contains(name) =>
            {
                self.is_exact(name, sets, object)
            }
            _ => true,
        }
    }

    fn field_type(&self, type_name: &str, field: &str) -> Option<&'a TypeRef> {
        if field == "__typename" {
            return Some(&*TYPENAME);
        }
        self.shapes
            .fields
            .get(type_name)
            .and_then(|fields| fields.get(field))
    }

    fn collected_fields(
        &self,
        type_name: &'a str,
        sets: &[&'a Positioned<SelectionSet>],
    ) -> Rc<[Collected<'a>]> {
        let key = (
            type_name,
            sets.iter()
                .map(|set| std::ptr::from_ref(*set) as usize)
                .collect(),
        );
        if let Some(collected) = self.collected.borrow().get(&key) {
            return Rc::clone(collected);
        }
        let mut collected = Vec::new();
        let mut fragments_seen = HashSet::new();
        for set in sets {
            self.collect(type_name, set, &mut collected, &mut fragments_seen);
        }
        let collected: Rc<[Collected<'a>]> = collected.into();
        self.collected
            .borrow_mut()
            .insert(key, Rc::clone(&collected));
        collected
    }

    /// A value of type `ty`; `None` when it is null in a non-null position.
    fn value(
        &self,
        ty: &'a TypeRef,
        sets: &[&'a Positioned<SelectionSet>],
        value: Value,
    ) -> Option<Value> {
        match ty {
            TypeRef::NonNull(inner) => match self.value(inner, sets, value) {
                Some(Value::Null) | None => None,
                Some(value) => Some(value),
            },
            TypeRef::List(inner) => match value {
                Value::List(items) => {
                    let mut completed = Vec::with_capacity(items.len());
                    for item in items {
                        match self.value(inner, sets, item) {
                            Some(item) => completed.push(item),
                            // A null where the items are non-null nulls the whole list.
                            None => return Some(Value::Null),
                        }
                    }
                    Some(Value::List(completed))
                }
                other => Some(other),
            },
            TypeRef::Named(name) => match value {
                Value::Object(object)
                    if !sets.is_empty() && !self.shapes.abstract_types.contains(name) =>
                {
                    Some(match self.object(name, sets, object) {
                        Some(object) => Value::Object(object),
                        None => Value::Null,
                    })
                }
                other => Some(other),
            },
        }
    }

    /// The spec's CollectFields: the fields `set` selects on `type_name`, in order, with
    /// fragments flattened and `@skip`/`@include` applied.
    fn collect(
        &self,
        type_name: &str,
        set: &'a Positioned<SelectionSet>,
        collected: &mut Vec<Collected<'a>>,
        fragments_seen: &mut HashSet<&'a str>,
    ) {
        for selection in &set.node.items {
            if !self.included(selection.node.directives()) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let key = &field.response_key().node;
                    match collected.iter_mut().find(|seen| seen.key == key) {
                        Some(seen) => seen.sets.push(&field.selection_set),
                        None => collected.push(Collected {
                            key,
                            field: field.name.node.as_str(),
                            ty: self.field_type(type_name, field.name.node.as_str()),
                            sets: vec![&field.selection_set],
                        }),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let Some(fragment) = self.document.fragments.get(name) else {
                        continue;
                    };
                    if self.applies(
                        type_name,
                        fragment.node.type_condition.node.on.node.as_str(),
                    ) && fragments_seen.insert(name)
                    {
                        self.collect(
                            type_name,
                            &fragment.node.selection_set,
                            collected,
                            fragments_seen,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    let applies = inline.node.type_condition.as_ref().is_none_or(|condition| {
                        self.applies(type_name, condition.node.on.node.as_str())
                    });
                    if applies {
                        self.collect(
                            type_name,
                            &inline.node.selection_set,
                            collected,
                            fragments_seen,
                        );
                    }
                }
            }
        }
    }

    /// Whether a fragment on `condition` applies to an object of `type_name`. Only objects
    /// are completed here, so an abstract condition is given the benefit of the doubt.
    fn applies(&self, type_name: &str, condition: &str) -> bool {
        condition == type_name || self.shapes.abstract_types.contains(condition)
    }

    /// `@skip(if:)` and `@include(if:)`, as the executor applied them.
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|directive| {
            let directive = &directive.node;
            let condition = directive.get_argument("if").map(|value| {
                value
                    .node
                    .clone()
                    .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
                    .ok()
                    == Some(Value::Boolean(true))
            });
            !matches!(
                (directive.name.node.as_str(), condition),
                ("skip", Some(true)) | ("include", Some(false))
            )
        })
    }
}
