//! Plain selections answered at once, without the executor's machinery.
//!
//! async-graphql resolves every field of an object as a boxed future of its own, with a
//! context, and joins them. A listing of 20 competitions with their organizers selects
//! about 200 fields, and that machinery was the largest single part of the server's CPU
//! under the read scenarios (`perf`). Most of those fields are columns already read: they
//! need no context and cannot fail. So an object whose fields are known here answers a
//! plain selection (fields only, without arguments, directives or fragments, each response
//! key once) by building its value directly; any other selection goes to the executor, as
//! before. The values are the same either way (tests compare the two paths).

use std::borrow::Cow;

use async_graphql::{
    ContextSelectionSet, OutputType, Positioned, ServerResult, Value,
    indexmap::IndexMap,
    parser::types::{Field, Selection, SelectionSet},
    registry::Registry,
};

/// An object type some of whose fields are known without the executor.
pub trait PlainFields {
    /// The type's GraphQL name, for `__typename`.
    const TYPE_NAME: &'static str;

    /// The value of the field `name` (its own sub-selection `selection`), or `None` when
    /// the executor must resolve it: it needs the context or a read, or may fail.
    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value>;
}

impl<T: PlainFields> PlainFields for &T {
    const TYPE_NAME: &'static str = T::TYPE_NAME;

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        (**self).plain_field(name, selection)
    }
}

impl<T: PlainFields + Clone> PlainFields for Cow<'_, T> {
    const TYPE_NAME: &'static str = T::TYPE_NAME;

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        self.as_ref().plain_field(name, selection)
    }
}

/// `selection` on `object` as a value, or `None` when it is not plain.
pub fn object<T: PlainFields>(object: &T, selection: &Positioned<SelectionSet>) -> Option<Value> {
    let items = &selection.node.items;
    let mut values = IndexMap::with_capacity(items.len());
    for item in items {
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let Field {
            name,
            arguments,
            directives,
            selection_set,
            ..
        } = &field.node;
        if !arguments.is_empty() || !directives.is_empty() {
            return None;
        }
        let value = match name.node.as_str() {
            "__typename" => Value::String(T::TYPE_NAME.to_owned()),
            name => object.plain_field(name, selection_set)?,
        };
        // A key selected twice merges its selections: the executor's work.
        if values
            .insert(field.node.response_key().node.clone(), value)
            .is_some()
        {
            return None;
        }
    }
    Some(Value::Object(values))
}

/// An object resolved from its plain fields when the selection allows it, by the executor
/// otherwise. The schema sees `T` itself.
pub struct Plain<T>(pub T);

impl<T: OutputType + PlainFields> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match object(&self.0, ctx.item) {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        }
    }
}
