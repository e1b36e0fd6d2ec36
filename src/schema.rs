// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "fang_task_state"))]
    pub struct FangTaskState;
}

diesel::table! {
    competitions (id) {
        id -> Uuid,
        organizer_id -> Uuid,
        title -> Text,
        description -> Text,
        tags -> Array<Text>,
        capacity -> Int4,
        registered_count -> Int4,
        reg_deadline -> Timestamptz,
        start_date -> Timestamptz,
        created_at -> Timestamptz,
        waitlist_count -> Int4,
        cancelled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    deployment (id) {
        id -> Uuid,
        singleton -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    failed_jobs (id) {
        id -> Uuid,
        task_id -> Uuid,
        task_type -> Text,
        metadata -> Jsonb,
        error_message -> Text,
        retries -> Int4,
        failed_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::FangTaskState;

    fang_tasks (id) {
        id -> Uuid,
        metadata -> Jsonb,
        error_message -> Nullable<Text>,
        state -> FangTaskState,
        task_type -> Text,
        uniq_hash -> Nullable<Text>,
        retries -> Int4,
        scheduled_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        competition_id -> Uuid,
        registration_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mailbox (id) {
        id -> Uuid,
        user_id -> Uuid,
        registration_id -> Uuid,
        kind -> Text,
        to_address -> Text,
        subject -> Text,
        body -> Text,
        sent_at -> Timestamptz,
        activation -> Int4,
    }
}

diesel::table! {
    registrations (id) {
        id -> Uuid,
        user_id -> Uuid,
        competition_id -> Uuid,
        status -> Text,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        activation -> Int4,
        waitlist_seq -> Nullable<Int8>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        name -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(competitions -> users (organizer_id));
diesel::joinable!(mailbox -> registrations (registration_id));
diesel::joinable!(mailbox -> users (user_id));
diesel::joinable!(registrations -> competitions (competition_id));
diesel::joinable!(registrations -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    competitions,
    deployment,
    failed_jobs,
    fang_tasks,
    idempotency_keys,
    mailbox,
    registrations,
    users,
);
