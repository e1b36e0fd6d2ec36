//! Background jobs: confirmations, retries and dead letters, reminders, crash recovery and
//! graceful shutdown, against real workers (in-process or the real `worker` binary).

use std::{process::Stdio, time::Duration};

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use mini_compete::config::JobsConfig;

use crate::helpers::{Account, MAIL_INSERTS_BLOCKED, TestApp, test_jobs_config};

const REGISTER: &str = "mutation($id: ID!, $key: String) {
    register(competitionId: $id, idempotencyKey: $key) { id status } }";
const MY_MAIL: &str = "{ myMail { id kind to subject body sentAt } }";
const CONFIRMED: &str = "SELECT count(*) FROM registrations WHERE status = 'CONFIRMED'";
const QUEUED_CONFIRMATIONS: &str =
    "SELECT count(*) FROM fang_tasks WHERE task_type = 'confirmation'";
const WAIT: Duration = Duration::from_secs(30);

async fn competition(app: &TestApp, title: &str, starts_in: chrono::Duration) -> String {
    let organizer = app.signup("ORGANIZER").await;
    let now = Utc::now();
    let body = app
        .create_competition(
            &organizer,
            json!({
                "title": title,
                "capacity": 500,
                "regDeadline": (now + chrono::Duration::minutes(30)).to_rfc3339(),
                "startDate": (now + starts_in).to_rfc3339(),
            }),
        )
        .await;
    body["data"]["createCompetition"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn register(app: &TestApp, who: &Account, competition: &str) -> String {
    let body = app
        .gql_as(
            Some(&who.token),
            REGISTER,
            json!({ "id": competition, "key": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    body["data"]["register"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn my_mail(app: &TestApp, who: &Account) -> Vec<Value> {
    let body = app.gql_as(Some(&who.token), MY_MAIL, json!({})).await;
    body["data"]["myMail"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

/// Holds a lock that blocks every mailbox insert (so confirmations hang mid-task) until
/// `release`.
struct MailboxLock(AsyncPgConnection);

impl MailboxLock {
    async fn take(app: &TestApp) -> Self {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db().await;
        for sql in ["BEGIN", "LOCK TABLE mailbox IN SHARE ROW EXCLUSIVE MODE"] {
            diesel::sql_query(sql).execute(&mut conn).await.unwrap();
        }
        Self(conn)
    }

    async fn release(mut self) {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("COMMIT")
            .execute(&mut self.0)
            .await
            .unwrap();
    }
}

/// The real `mini-compete worker` process against the test's database.
fn worker_process(app: &TestApp, stall_timeout_secs: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("worker")
        .env("DATABASE_URL", &app.config.database_url)
        .env("WORKER_CONCURRENCY", "4")
        .env("JOB_STALL_TIMEOUT_SECS", stall_timeout_secs.to_string())
        .env("JOB_POLL_INTERVAL_MS", "200")
        .env("JOB_DRAIN_SECS", "30")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("worker binary starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_is_confirmed_with_exactly_one_mail() {
    let app = TestApp::spawn().await;
    let competition = competition(&app, "Autumn Hackathon", chrono::Duration::days(5)).await;
    let participant = app.signup("PARTICIPANT").await;
    let registration = register(&app, &participant, &competition).await;

    app.wait_for_count(CONFIRMED, 1, WAIT).await;
    let mine = app
        .gql_as(
            Some(&participant.token),
            "{ myRegistrations { id status confirmedAt } }",
            json!({}),
        )
        .await;
    let mine = &mine["data"]["myRegistrations"][0];
    assert_eq!(mine["id"], registration.as_str());
    assert_eq!(mine["status"], "CONFIRMED");
    assert!(mine["confirmedAt"].is_string(), "{mine}");

    let mail = my_mail(&app, &participant).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["kind"], "CONFIRMATION");
    assert_eq!(mail[0]["to"], participant.email.as_str());
    assert!(
        mail[0]["subject"]
            .as_str()
            .unwrap()
            .contains("Autumn Hackathon")
    );
    let body = mail[0]["body"].as_str().unwrap();
    assert!(
        body.contains("Test User") && body.contains("Autumn Hackathon"),
        "{body}"
    );
    app.wait_for_count(QUEUED_CONFIRMATIONS, 0, WAIT).await;

    // fang may hand one task to two workers: running it again must not mail again.
    app.run_sql(&format!(
        "INSERT INTO fang_tasks (metadata, task_type) VALUES
         (jsonb_build_object('type', 'ConfirmRegistration', 'registration_id', '{registration}'),
          'confirmation')"
    ))
    .await;
    app.wait_for_count(QUEUED_CONFIRMATIONS, 0, WAIT).await;
    assert_eq!(my_mail(&app, &participant).await.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM failed_jobs").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn my_mail_needs_a_caller_and_a_sane_page_size() {
    let app = TestApp::spawn_without_workers().await;
    let anonymous = app.gql(MY_MAIL, json!({})).await;
    assert_eq!(crate::helpers::error_code(&anonymous), "UNAUTHENTICATED");
    let participant = app.signup("PARTICIPANT").await;
    let too_many = app
        .gql_as(
            Some(&participant.token),
            "{ myMail(first: 101) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&too_many), "BAD_USER_INPUT");
    assert!(my_mail(&app, &participant).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_registration_is_not_confirmed_and_its_task_ends_cleanly() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let participant = app.signup("PARTICIPANT").await;
    let registration = register(&app, &participant, &competition).await;
    let cancelled = app
        .gql_as(
            Some(&participant.token),
            "mutation($id: ID!) { cancelRegistration(registrationId: $id) { status } }",
            json!({ "id": registration }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelRegistration"]["status"],
        "CANCELLED"
    );

    let workers = app.start_workers(test_jobs_config());
    app.wait_for_count(QUEUED_CONFIRMATIONS, 0, WAIT).await;
    workers.stop().await;
    assert_eq!(
        app.count("SELECT count(*) FROM registrations WHERE status = 'CANCELLED'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM mailbox").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM failed_jobs").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_always_fails_ends_in_failed_jobs_after_five_attempts() {
    let app = TestApp::spawn().await;
    // Every confirmation now fails inside its statement, as a broken mail step would.
    app.run_sql(
        "ALTER TABLE mailbox ADD CONSTRAINT refuse_confirmations
         CHECK (kind <> 'CONFIRMATION') NOT VALID",
    )
    .await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let participant = app.signup("PARTICIPANT").await;
    register(&app, &participant, &competition).await;

    app.wait_for_count("SELECT count(*) FROM failed_jobs", 1, WAIT)
        .await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM failed_jobs WHERE task_type = 'confirmation' AND retries = 4
               AND error_message LIKE '%refuse_confirmations%'
               AND metadata->>'type' = 'ConfirmRegistration'"
        )
        .await,
        1
    );
    // Kept for inspection, in fang's own table too; nothing half-written.
    assert_eq!(
        app.count("SELECT count(*) FROM fang_tasks WHERE state = 'failed' AND retries = 4")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM registrations WHERE status = 'PENDING'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM mailbox").await, 0);
}

/// A worker that died mid-task costs that task an attempt: it is rescued while attempts are
/// left and dead-lettered after the last, so a task that kills its worker every time ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_stalled_on_its_last_attempt_is_dead_lettered_not_rescued_again() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let (early, late) = (
        app.signup("PARTICIPANT").await,
        app.signup("PARTICIPANT").await,
    );
    register(&app, &early, &competition).await;
    let late_registration = register(&app, &late, &competition).await;
    // As if a worker had died an hour ago holding both: one on its first attempt, one on
    // its fifth and last.
    app.run_sql(&format!(
        "UPDATE fang_tasks SET state = 'in_progress', updated_at = now() - interval '1 hour',
                retries = CASE metadata->>'registration_id' WHEN '{late_registration}' THEN 4 ELSE 0 END"
    ))
    .await;

    let workers = app.start_workers(test_jobs_config());
    app.wait_for_count(CONFIRMED, 1, WAIT).await;
    app.wait_for_count("SELECT count(*) FROM failed_jobs", 1, WAIT)
        .await;
    workers.stop().await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM failed_jobs
              WHERE metadata->>'registration_id' = '{late_registration}' AND retries = 4
                AND error_message LIKE 'stalled on its last attempt%'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM registrations WHERE id = '{late_registration}' AND status = 'PENDING'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM fang_tasks WHERE task_type = 'confirmation' AND state <> 'failed'"
        )
        .await,
        0,
        "the rescued task ran and was deleted; the dead one stays failed"
    );
    assert_eq!(app.count("SELECT count(*) FROM mailbox").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_cannot_be_decoded_is_dead_lettered_at_once() {
    let app = TestApp::spawn().await;
    app.run_sql(
        "INSERT INTO fang_tasks (metadata, task_type)
         VALUES ('{\"type\": \"NoSuchTask\"}', 'confirmation')",
    )
    .await;
    app.wait_for_count(
        "SELECT count(*) FROM failed_jobs WHERE retries = 0 AND error_message LIKE '%NoSuchTask%'",
        1,
        WAIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_go_once_to_each_confirmed_registration_starting_within_a_day() {
    let app = TestApp::spawn_without_workers().await;
    let tomorrow = competition(&app, "Night Sprint", chrono::Duration::hours(20)).await;
    let later = competition(&app, "Far Cup", chrono::Duration::days(3)).await;
    let participants = app.bulk_participants(4).await;
    let [stays, also_stays, cancels, far_only] = &participants[..] else {
        unreachable!()
    };
    for who in [stays, also_stays, cancels] {
        register(&app, who, &tomorrow).await;
    }
    register(&app, stays, &later).await;
    register(&app, far_only, &later).await;

    // Confirm everything while reminders are not due (a yearly cron).
    let mut settings = test_jobs_config();
    settings.reminder_cron = "0 0 0 1 1 * *".to_owned();
    let confirming = app.start_workers(settings);
    app.wait_for_count(CONFIRMED, 5, WAIT).await;
    confirming.stop().await;
    let cancelled_id = app
        .gql_as(
            Some(&cancels.token),
            "{ myRegistrations { id } }",
            json!({}),
        )
        .await["data"]["myRegistrations"][0]["id"]
        .clone();
    let cancelled = app
        .gql_as(
            Some(&cancels.token),
            "mutation($id: ID!) { cancelRegistration(registrationId: $id) { status } }",
            json!({ "id": cancelled_id }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelRegistration"]["status"],
        "CANCELLED"
    );

    // Now every second, with two worker pools racing for each tick.
    let mut settings = test_jobs_config();
    settings.reminder_cron = "* * * * * * *".to_owned();
    let first = app.start_workers(settings.clone());
    let second = app.start_workers(settings);
    app.wait_for_count(
        "SELECT count(*) FROM mailbox WHERE kind = 'REMINDER'",
        2,
        WAIT,
    )
    .await;
    // Let several more ticks pass: each reschedules the task a second later.
    let ticks_from = app
        .count("SELECT coalesce(max(extract(epoch FROM scheduled_at)), 0)::bigint FROM fang_tasks WHERE task_type = 'reminders'")
        .await;
    app.wait_for_count(
        &format!(
            "SELECT (count(*) > 0)::int FROM fang_tasks WHERE task_type = 'reminders'
               AND extract(epoch FROM scheduled_at) >= {} ",
            ticks_from + 3
        ),
        1,
        WAIT,
    )
    .await;
    first.stop().await;
    second.stop().await;

    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'REMINDER'")
            .await,
        2
    );
    for who in [stays, also_stays] {
        let reminders: Vec<_> = my_mail(&app, who)
            .await
            .into_iter()
            .filter(|mail| mail["kind"] == "REMINDER")
            .collect();
        assert_eq!(reminders.len(), 1, "{reminders:?}");
        assert!(
            reminders[0]["subject"]
                .as_str()
                .unwrap()
                .contains("Night Sprint")
        );
    }
    for who in [cancels, far_only] {
        assert!(
            my_mail(&app, who)
                .await
                .iter()
                .all(|mail| mail["kind"] != "REMINDER")
        );
    }
    // The yearly schedule was replaced, not left beside the new one.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM fang_tasks WHERE task_type = 'reminders'
               AND metadata->>'cron' <> '* * * * * * *'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_batch_loses_nothing_and_mails_nothing_twice() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Big Cup", chrono::Duration::days(5)).await;
    let participants = app.bulk_participants(150).await;
    let registered = futures_util::future::join_all(
        participants
            .iter()
            .map(|who| register(&app, who, &competition)),
    )
    .await;
    assert_eq!(registered.len(), 150);

    // The victim claims a batch and hangs in it (mail inserts are blocked)...
    let lock = MailboxLock::take(&app).await;
    let mut victim = worker_process(&app, 2);
    app.wait_for_count(MAIL_INSERTS_BLOCKED, 1, WAIT).await;
    // ...and dies holding its tasks.
    victim.kill().await.unwrap();
    let survivors = [worker_process(&app, 2), worker_process(&app, 2)];
    lock.release().await;

    app.wait_for_count(CONFIRMED, 150, Duration::from_secs(60))
        .await;
    app.wait_for_count(QUEUED_CONFIRMATIONS, 0, WAIT).await;
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'CONFIRMATION'")
            .await,
        150
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT registration_id) FROM mailbox")
            .await,
        150
    );
    assert_eq!(app.count("SELECT count(*) FROM failed_jobs").await, 0);
    drop(survivors);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_finishes_its_running_task_on_sigterm_before_exiting() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let participant = app.signup("PARTICIPANT").await;
    register(&app, &participant, &competition).await;

    let lock = MailboxLock::take(&app).await;
    let mut worker = worker_process(&app, 300);
    app.wait_for_count(MAIL_INSERTS_BLOCKED, 1, WAIT).await;
    let pid = worker.id().expect("running").to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());

    // Release the task only once the worker says it is draining.
    let mut log = BufReader::new(worker.stdout.take().expect("piped")).lines();
    let draining = tokio::time::timeout(WAIT, async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("letting running tasks finish") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(draining, Ok(true), "the worker never said it was draining");
    lock.release().await;

    let status = tokio::time::timeout(WAIT, worker.wait())
        .await
        .expect("the worker exits after draining")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(app.count(QUEUED_CONFIRMATIONS).await, 0);
    assert_eq!(app.count(CONFIRMED).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM mailbox").await, 1);
}

/// A confirmation's first attempt is done by the statement that claims it: the task is
/// deleted with its registration confirmed and mailed, never written `in_progress` first.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_confirmation_is_done_by_its_claim_without_an_in_progress_write() {
    const ROWS: i64 = 20;
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let participants = app.bulk_participants(ROWS as usize).await;
    for who in &participants {
        register(&app, who, &competition).await;
    }
    // No cron task falls due meanwhile: each would be claimed `in_progress`, as it should.
    let far_away = "0 0 0 1 1 * 2099";
    let workers = app.start_workers(JobsConfig {
        reminder_cron: far_away.to_owned(),
        prune_cron: far_away.to_owned(),
        ..test_jobs_config()
    });
    app.wait_for_count(CONFIRMED, ROWS, WAIT).await;
    app.wait_for_count(QUEUED_CONFIRMATIONS, 0, WAIT).await;
    workers.stop().await;
    // Postgres publishes its table statistics within a second or so of each transaction.
    app.wait_for_count(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'fang_tasks'",
        ROWS,
        WAIT,
    )
    .await;
    assert_eq!(
        app.count("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'fang_tasks'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'CONFIRMATION'")
            .await,
        ROWS
    );
}

/// A confirmation task the claiming statement cannot read fails that statement; the worker
/// then claims plainly, so that task is dead-lettered alone and the rest of the batch is
/// confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_confirmation_task_that_cannot_be_read_fails_alone_and_the_rest_are_confirmed() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, "Cup", chrono::Duration::days(5)).await;
    let participants = app.bulk_participants(3).await;
    for who in &participants {
        register(&app, who, &competition).await;
    }
    app.run_sql(
        "INSERT INTO fang_tasks (metadata, task_type)
         VALUES ('{\"type\": \"ConfirmRegistration\", \"registration_id\": \"not-a-uuid\"}',
                 'confirmation')",
    )
    .await;
    let workers = app.start_workers(test_jobs_config());
    app.wait_for_count(CONFIRMED, 3, WAIT).await;
    app.wait_for_count(
        "SELECT count(*) FROM failed_jobs WHERE retries = 0 AND metadata->>'registration_id' = 'not-a-uuid'",
        1,
        WAIT,
    )
    .await;
    workers.stop().await;
    assert_eq!(app.count("SELECT count(*) FROM mailbox").await, 3);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM fang_tasks WHERE state <> 'failed' AND task_type = 'confirmation'"
        )
        .await,
        0
    );
}
