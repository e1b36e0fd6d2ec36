//! `loadgen`: Mini-Compete's load generator. Each scenario gets a scratch database and an
//! in-process server (or loads `--url`), bulk-made users with real JWTs, and sends real
//! GraphQL documents from a fixed number of concurrent clients. It prints a table (and, with
//! `--json`, one JSON line per scenario) beside the raw-SQL ceiling pgbench measures on the
//! same Postgres in the same run.

mod ceiling;
mod drive;
mod env;
mod live;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use drive::{Driver, Request, Tally, cycle};
use env::{Env, Target};
use mini_compete::{config::JobsConfig, db, jobs};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const REGISTER: &str = "mutation($id: ID!, $key: String) { register(competitionId: $id, idempotencyKey: $key) { id status } }";
const LIST: &str = "{ competitions(first: 20) { edges { node {
    id title capacity registeredCount regDeadline startDate organizer { id name } } } } }";
const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { token user { id } } }";
const FLOOD_PASSWORD: &str = "Flood-Password-1";
const CONFIRMED: &str = "SELECT count(*) AS n FROM registrations WHERE status = 'CONFIRMED'";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One competition, capacity 1000, 2000 participants, 256 clients.
    Hot,
    /// 200 competitions, random participants, 64 clients.
    Spread,
    /// `competitions(first: 20)` with organizers, 64 clients.
    Reads,
    /// `reads` alone, then beside logins at full tilt.
    LoginFlood,
    /// Registrations at a steady 100/s: commit → CONFIRMED; then the workers' drain rate.
    Jobs,
    /// `reads` alone, then beside one client sending the costliest documents there are.
    Hostile,
    /// Capacity 1000, 3000 registrations with `waitlist: true` at 256 clients; then 500
    /// cancellations racing 500 more waiting-list registrations.
    Waitlist,
    /// 5000 subscriptions to one competition on one server while `hot` fills it through
    /// another: delivery latency, messages per second, hot beside them, RSS.
    Subscribers,
    /// `competition(id)` with its organizer, over 200 competitions, 64 clients.
    ReadOne,
    /// `myRegistrations` with each competition and organizer: 500 participants with 10
    /// registrations each, 64 clients.
    MyRegistrations,
    /// The organizer's view of a competition: its registrations with their users; 20
    /// competitions of 50 registrations, 64 clients.
    OrganizerView,
}

impl Scenario {
    /// As on the command line (`read-one`).
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |value| value.get_name().to_owned())
    }
}

#[derive(Parser)]
#[command(about = "Load generator for Mini-Compete")]
struct Args {
    /// Scenarios, in order (default: all of them).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,

    /// Postgres server for the scratch databases (with --url: the server's own database).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@localhost:5432/postgres"
    )]
    database_url: String,

    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,

    /// Load this running server (e.g. http://127.0.0.1:3000) instead of an in-process one.
    #[arg(long)]
    url: Option<String>,

    /// The `JWT_SECRET` of the server at --url.
    #[arg(long, env = "LOADGEN_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// Multiplies request counts and durations (e.g. 0.02 for a smoke run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,

    /// Seconds of each timed phase (reads, login-flood, jobs) before scaling.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,

    /// Seconds pgbench measures each ceiling; 0 skips them.
    #[arg(long, default_value_t = 10)]
    ceiling_secs: u64,

    /// Worker slots of the in-process server (`WORKER_CONCURRENCY`) in every scenario but
    /// the jobs drain, which runs workers alone.
    #[arg(long, default_value_t = 4)]
    server_workers: usize,

    /// One JSON line per scenario on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,

    /// Subscribers in the `subscribers` scenario (default: 5 000 × scale).
    #[arg(long)]
    watchers: Option<usize>,

    /// The server binary the `subscribers` scenario starts (default: `mini-compete` beside
    /// this one).
    #[arg(long, env = "LOADGEN_SERVER_BIN")]
    server_bin: Option<std::path::PathBuf>,
}

/// One scenario's figures.
struct Report {
    scenario: Scenario,
    tally: Tally,
    oversold: Option<i64>,
    ceiling_tps: Option<f64>,
    rss_mib: Option<f64>,
    extra: Map<String, Value>,
}

impl Report {
    fn new(scenario: Scenario, tally: Tally) -> Self {
        Self {
            scenario,
            tally,
            oversold: None,
            ceiling_tps: None,
            rss_mib: None,
            extra: Map::new(),
        }
    }

    fn name(&self) -> String {
        self.scenario.name()
    }

    fn ratio(&self) -> Option<f64> {
        self.ceiling_tps
            .map(|ceiling| self.tally.throughput() / ceiling)
    }

    fn to_json(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let mut line = json!({
            "scenario": self.name(),
            "requests": self.tally.requests(),
            "ok": self.tally.ok,
            "refused": self.tally.refused,
            "errors": self.tally.errors,
            "throughput_rps": round(self.tally.throughput()),
            "p50_ms": round(self.tally.percentile(0.50)),
            "p95_ms": round(self.tally.percentile(0.95)),
            "p99_ms": round(self.tally.percentile(0.99)),
            "oversold": self.oversold,
            "ceiling_tps": self.ceiling_tps.map(round),
            "ratio": self.ratio().map(|r| (r * 1000.0).round() / 1000.0),
            "server_rss_mib": self.rss_mib.map(round),
        });
        if let Some(line) = line.as_object_mut() {
            line.extend(self.extra.clone());
        }
        line
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // As the server binary does: the in-process server measures like the real one.
    mini_compete::allocator::configure();
    let args = Args::parse();
    anyhow::ensure!(args.scale > 0.0, "--scale must be positive");
    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    let target = Target {
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        url: args.url.clone(),
        jwt_secret: args.jwt_secret.clone(),
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        eprintln!("{scenario:?}…");
        let report = match scenario {
            Scenario::Hot => registrations(&args, &target, scenario).await,
            Scenario::Spread => registrations(&args, &target, scenario).await,
            Scenario::Reads => reads(&args, &target).await,
            Scenario::ReadOne => read_one(&args, &target).await,
            Scenario::MyRegistrations => my_registrations(&args, &target).await,
            Scenario::OrganizerView => organizer_view(&args, &target).await,
            Scenario::LoginFlood => login_flood(&args, &target).await,
            Scenario::Jobs => jobs_latency(&args, &target).await,
            Scenario::Hostile => hostile(&args, &target).await,
            Scenario::Waitlist => waitlist(&args, &target).await,
            Scenario::Subscribers => subscribers(&args, &target).await,
        }
        .with_context(|| format!("scenario {scenario:?}"))?;
        if args.json {
            println!("{}", report.to_json());
        }
        reports.push(report);
    }
    print_table(&reports, args.json);
    Ok(())
}

fn scaled(n: f64, scale: f64) -> usize {
    ((n * scale).round() as usize).max(1)
}

fn timed(args: &Args) -> Duration {
    Duration::from_secs_f64((args.duration_secs as f64 * args.scale).max(1.0))
}

fn token(participant: &env::Participant) -> Option<Arc<str>> {
    Some(Arc::from(participant.token.as_str()))
}

fn register(participant: &env::Participant, competition: Uuid) -> Request {
    Request::new(
        REGISTER,
        json!({ "id": competition, "key": Uuid::new_v4().to_string() }),
        token(participant),
    )
}

/// Samples this process's RSS while `work` runs; returns its result and the peak.
async fn with_peak_rss<T>(work: impl Future<Output = T>) -> (T, Option<f64>) {
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                if let Some(mib) = env::rss_mib() {
                    peak.fetch_max(mib.to_bits(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let result = work.await;
    sampler.abort();
    let peak = f64::from_bits(peak.load(Ordering::Relaxed));
    (result, (peak > 0.0).then_some(peak))
}

/// A pgbench figure measured for `--ceiling-secs`, or None: skipped, or failed (the reason
/// goes to stderr; the scenario's own figures still count).
async fn ceiling<F>(args: &Args, what: &str, measure: impl FnOnce(Duration) -> F) -> Option<f64>
where
    F: Future<Output = anyhow::Result<f64>>,
{
    if args.ceiling_secs == 0 {
        return None;
    }
    measure(Duration::from_secs(args.ceiling_secs))
        .await
        .map_err(|error| eprintln!("  no {what}: {error:#}"))
        .ok()
}

/// `hot` (one competition) or `spread` (200): everyone registers once.
async fn registrations(args: &Args, target: &Target, scenario: Scenario) -> anyhow::Result<Report> {
    let (competitions, capacity, participants, clients, script) = match scenario {
        Scenario::Hot => (
            1,
            scaled(1000.0, args.scale),
            scaled(2000.0, args.scale),
            256,
            ceiling::HOT,
        ),
        _ => (
            200,
            1_000_000,
            scaled(30_000.0, args.scale),
            64,
            ceiling::SPREAD,
        ),
    };
    let env = Env::start(target, args.server_workers).await?;
    let competition_ids = env
        .competitions(competitions, i32::try_from(capacity)?)
        .await?;
    let people = env.participants(participants).await?;
    let requests: Vec<Request> = people
        .iter()
        .map(|who| {
            let pick = (Uuid::new_v4().as_u128() % competition_ids.len() as u128) as usize;
            register(who, competition_ids[pick])
        })
        .collect();
    let driver = Driver::new(&env.graphql_url)?;
    let label = scenario.name();
    let (tally, rss) = with_peak_rss(driver.all(clients.min(participants), requests, &label)).await;
    let ended = tokio::time::Instant::now();
    let mut report = Report::new(scenario, tally);
    let registered = env
        .number("SELECT count(*) AS n FROM registrations")
        .await?;
    if args.server_workers > 0 && env.in_process() {
        // The server's own workers confirm during the run: how far behind they were, and
        // how long the backlog took to drain once the clients stopped.
        wait_for(&env, CONFIRMED, registered).await?;
        report.extra.insert(
            "backlog_drained_ms".into(),
            json!(ended.elapsed().as_millis()),
        );
        report.extra.extend(confirmation_lag(&env).await?);
    }
    report.oversold = Some(env.oversold().await?);
    report.rss_mib = rss.filter(|_| env.in_process());
    report.extra.insert("clients".into(), json!(clients));
    report.extra.insert("registered".into(), json!(registered));
    env.finish().await?;
    let server = &target.database_url;
    report.ceiling_tps = ceiling(args, "ceiling", |secs| {
        ceiling::registration(server, script, clients, secs)
    })
    .await;
    report.extra.insert(
        "ceiling_clients".into(),
        json!(clients.min(ceiling::MAX_PGBENCH_CLIENTS)),
    );
    // Capacity enough never to fill, like the toy's.
    let schema_ceiling = ceiling(args, "schema ceiling", |secs| {
        ceiling::schema_registration(server, competitions, 1_000_000, clients, secs)
    });
    if let Some(tps) = schema_ceiling.await {
        let ratio = report.tally.throughput() / tps;
        report
            .extra
            .insert("schema_ceiling_tps".into(), json!(tps.round()));
        report.extra.insert(
            "schema_ratio".into(),
            json!((ratio * 1000.0).round() / 1000.0),
        );
    }
    Ok(report)
}

/// The anonymous listing, built once and sent over and over.
fn listings() -> impl Fn(usize) -> Request + Send + Sync + 'static {
    cycle(vec![Request::new(LIST, json!({}), None)])
}

/// Clients of every read scenario.
const READ_CLIENTS: usize = 64;

/// A read scenario on `env`'s rows: `make` for the duration, then pgbench's `script` on the
/// same rows as its ceiling.
async fn read_scenario(
    args: &Args,
    env: Env,
    scenario: Scenario,
    make: impl Fn(usize) -> Request + Send + Sync + 'static,
    script: &str,
) -> anyhow::Result<Report> {
    let label = scenario.name();
    let driver = Driver::new(&env.graphql_url)?;
    let (tally, rss) = with_peak_rss(driver.during(READ_CLIENTS, timed(args), make, &label)).await;
    let mut report = Report::new(scenario, tally);
    report.rss_mib = rss.filter(|_| env.in_process());
    report.ceiling_tps = ceiling(args, "ceiling", |secs| {
        ceiling::pgbench(&env.database_url, script, READ_CLIENTS, secs, &[])
    })
    .await;
    env.finish().await?;
    Ok(report)
}

async fn reads(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let env = Env::start(target, args.server_workers).await?;
    env.competitions(200, 100).await?;
    read_scenario(args, env, Scenario::Reads, listings(), ceiling::READS).await
}

const READ_ONE: &str = "query($id: ID!) { competition(id: $id) {
    id title capacity registeredCount regDeadline startDate organizer { id name } } }";

async fn read_one(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let env = Env::start(target, args.server_workers).await?;
    let ids = env.competitions(200, 100).await?;
    env.execute(&[ceiling::READ_ONE_IDS]).await?;
    let make = cycle(
        ids.iter()
            .map(|id| Request::new(READ_ONE, json!({ "id": id }), None))
            .collect(),
    );
    read_scenario(args, env, Scenario::ReadOne, make, ceiling::READ_ONE).await
}

const MY_REGISTRATIONS: &str = "{ myRegistrations { id status competition {
    id title startDate organizer { id name } } } }";

/// Ten registrations for every participant, straight into the tables (registering is not
/// what this measures), with the seat counts to match.
const REGISTER_TEN_EACH: [&str; 2] = [
    "INSERT INTO registrations (id, user_id, competition_id, status, confirmed_at)
     SELECT gen_random_uuid(), u.id, c.id, 'CONFIRMED', now()
       FROM users u
      CROSS JOIN LATERAL (SELECT id FROM competitions WHERE u.id IS NOT NULL
                           ORDER BY random() LIMIT 10) c
      WHERE u.role = 'PARTICIPANT'",
    "UPDATE competitions c SET registered_count =
            (SELECT count(*) FROM registrations r WHERE r.competition_id = c.id)",
];

async fn my_registrations(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let env = Env::start(target, args.server_workers).await?;
    env.competitions(200, 1000).await?;
    let people = env.participants(500).await?;
    env.execute(&REGISTER_TEN_EACH).await?;
    env.execute(&[ceiling::MY_REGISTRATIONS_IDS]).await?;
    let make = cycle(
        people
            .iter()
            .map(|who| Request::new(MY_REGISTRATIONS, json!({}), token(who)))
            .collect(),
    );
    read_scenario(
        args,
        env,
        Scenario::MyRegistrations,
        make,
        ceiling::MY_REGISTRATIONS,
    )
    .await
}

const ORGANIZER_VIEW: &str = "query($id: ID!) { competition(id: $id) {
    title registeredCount registrations { id status user { id name } } } }";

/// Every participant in one competition, round-robin, straight into the tables.
const REGISTER_ROUND_ROBIN: [&str; 2] = [
    "INSERT INTO registrations (id, user_id, competition_id, status, confirmed_at)
     SELECT gen_random_uuid(), u.id, c.id, 'CONFIRMED', now()
       FROM (SELECT id, row_number() OVER () AS n FROM users WHERE role = 'PARTICIPANT') u
       JOIN (SELECT id, row_number() OVER () AS n FROM competitions) c
         ON c.n = u.n % (SELECT count(*) FROM competitions) + 1",
    "UPDATE competitions c SET registered_count =
            (SELECT count(*) FROM registrations r WHERE r.competition_id = c.id)",
];

async fn organizer_view(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let env = Env::start(target, args.server_workers).await?;
    let ids = env.competitions(20, 1000).await?;
    env.participants(1000).await?;
    env.execute(&REGISTER_ROUND_ROBIN).await?;
    env.execute(&[ceiling::READ_ONE_IDS]).await?;
    let token: Arc<str> = Arc::from(env.organizer_token().await?.as_str());
    let make = cycle(
        ids.iter()
            .map(|id| Request::new(ORGANIZER_VIEW, json!({ "id": id }), Some(token.clone())))
            .collect(),
    );
    read_scenario(
        args,
        env,
        Scenario::OrganizerView,
        make,
        ceiling::ORGANIZER_VIEW,
    )
    .await
}

async fn login_flood(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let (clients, flooders) = (64, 32);
    let env = Env::start(target, args.server_workers).await?;
    env.competitions(200, 100).await?;
    let driver = Driver::new(&env.graphql_url)?;
    let email = format!("{}@flood.example", Uuid::new_v4().simple());
    let signup = Request::new(
        "mutation($input: SignupInput!) { signup(input: $input) { token } }",
        json!({ "input": { "name": "Flood", "email": email, "password": FLOOD_PASSWORD, "role": "PARTICIPANT" } }),
        None,
    );
    driver
        .send(&signup)
        .await
        .map_err(|error| anyhow::anyhow!("signup failed: {error:?}"))?;

    let alone = driver
        .during(clients, timed(args), listings(), "reads alone")
        .await;
    let login = Request::new(
        LOGIN,
        json!({ "input": { "email": email, "password": FLOOD_PASSWORD } }),
        None,
    );
    let flood = {
        let driver = driver.clone();
        let duration = timed(args);
        tokio::spawn(async move {
            driver
                .during(flooders, duration, move |_| login.clone(), "logins")
                .await
        })
    };
    let (beside, rss) =
        with_peak_rss(driver.during(clients, timed(args), listings(), "reads beside logins")).await;
    let logins = flood.await?;
    let mut report = Report::new(Scenario::LoginFlood, beside);
    report.rss_mib = rss.filter(|_| env.in_process());
    let alone_p99 = alone.percentile(0.99);
    report
        .extra
        .insert("reads_alone_p99_ms".into(), json!(alone_p99));
    report.extra.insert(
        "p99_vs_alone".into(),
        json!((report.tally.percentile(0.99) / alone_p99 * 100.0).round() / 100.0),
    );
    report.extra.insert("logins".into(), json!(logins.ok));
    report
        .extra
        .insert("login_errors".into(), json!(logins.errors));
    report
        .extra
        .insert("logins_per_s".into(), json!(logins.throughput().round()));
    env.finish().await?;
    Ok(report)
}

/// The costliest documents a client can send, accepted or refused; `n` makes each text new,
/// so that none is answered from the document cache.
fn hostile_request(n: usize) -> Request {
    let mark = format!("# {n}\n");
    let bomb: String = (0..30)
        .map(|level| {
            format!(
                "fragment F{level} on Query {{ __typename ...F{0} ...F{0} }}\n",
                level + 1
            )
        })
        .collect();
    let aliases: String = (0..1_990 / 3)
        .map(|i| format!("a{i}: __typename "))
        .collect();
    let widest = "{ competitions(first: 100) { edges { node { id title description tags capacity
        registeredCount seatsLeft isOpen regDeadline startDate createdAt
        organizer { id name email role createdAt } } } } }";
    let query = match n % 9 {
        // Refused by the analysis, after a full parse.
        0 => format!("{mark}{{ ...F0 }}\n{bomb}fragment F30 on Query {{ __typename }}"),
        1 => format!("{mark}{{ {aliases} }}"),
        2 => format!(
            "{mark}mutation {{ a: login(input: {{email: \"a@b.co\", password: \"x\"}}) {{ token }} b: login(input: {{email: \"a@b.co\", password: \"y\"}}) {{ token }} }}"
        ),
        // Refused by the scan, before parsing.
        3 => format!(
            "{mark}{{ competition(id: {}1) {{ id }} }}",
            "[".repeat(200_000)
        ),
        4 => format!("{mark}{}", "{ a ".repeat(200_000)),
        // Refused before the JSON is decoded: 1 MiB of nesting.
        5 => {
            return Request::raw(format!(
                "{{\"query\":\"{{ __typename }}\",\"variables\":{{\"v{n}\":{}}}}}",
                "[".repeat(1_000_000)
            ));
        }
        // Accepted: the full introspection, the widest listing, a 900 KB argument.
        6 => format!("{mark}{INTROSPECTION}"),
        7 => format!("{mark}{widest}"),
        _ => format!(
            "{mark}{{ competitions(tag: \"{}\") {{ totalCount }} }}",
            "t".repeat(900_000)
        ),
    };
    Request::new(&query, json!({}), None)
}

/// graphql-js's full introspection query, as GraphiQL sends it.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { description
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType } directives { name description isRepeatable locations args { ...InputValue } } } }
  fragment FullType on __Type { kind name description specifiedByURL
    fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
    inputFields { ...InputValue } interfaces { ...TypeRef }
    enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
  fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
  fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
    kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }";

/// `reads` alone, then `reads` beside one client sending `hostile_request`s back to back.
async fn hostile(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let clients = 64;
    let env = Env::start(target, args.server_workers).await?;
    env.competitions(200, 100).await?;
    let driver = Driver::new(&env.graphql_url)?;
    let alone = driver
        .during(clients, timed(args), listings(), "reads alone")
        .await;
    let attack = {
        let driver = driver.clone();
        let duration = timed(args);
        tokio::spawn(async move { driver.during(1, duration, hostile_request, "hostile").await })
    };
    let (beside, rss) =
        with_peak_rss(driver.during(clients, timed(args), listings(), "reads beside hostile"))
            .await;
    let attack = attack.await?;
    let mut report = Report::new(Scenario::Hostile, beside);
    report.rss_mib = rss.filter(|_| env.in_process());
    let alone_p99 = alone.percentile(0.99);
    report
        .extra
        .insert("reads_alone_p99_ms".into(), json!(alone_p99));
    report
        .extra
        .insert("reads_alone_rps".into(), json!(alone.throughput().round()));
    report.extra.insert(
        "p99_vs_alone".into(),
        json!((report.tally.percentile(0.99) / alone_p99 * 100.0).round() / 100.0),
    );
    report
        .extra
        .insert("hostile_requests".into(), json!(attack.requests()));
    report.extra.insert(
        "hostile_p50_ms".into(),
        json!((attack.percentile(0.5) * 100.0).round() / 100.0),
    );
    env.finish().await?;
    Ok(report)
}

const QUEUE: &str = "mutation($id: ID!, $key: String) {
    register(competitionId: $id, idempotencyKey: $key, waitlist: true) { id status } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRegistration(registrationId: $id) { id status } }";
const SEATED: &str =
    "SELECT count(*) AS n FROM registrations WHERE status IN ('PENDING', 'CONFIRMED')";
const WAITING_IN_ORDER: &str =
    "SELECT id, user_id FROM registrations WHERE status = 'WAITLISTED' ORDER BY waitlist_seq";

fn queue(participant: &env::Participant, competition: Uuid) -> Request {
    Request::new(
        QUEUE,
        json!({ "id": competition, "key": Uuid::new_v4().to_string() }),
        token(participant),
    )
}

/// The waiting list under a flash crowd, then under churn; checked from the rows.
async fn waitlist(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let clients = 256;
    let capacity = scaled(1000.0, args.scale);
    let crowd = scaled(3000.0, args.scale);
    let churn = scaled(500.0, args.scale);
    let env = Env::start(target, args.server_workers).await?;
    let competition = env.competitions(1, i32::try_from(capacity)?).await?[0];
    let people = env.participants(crowd).await?;
    let requests = people.iter().map(|who| queue(who, competition)).collect();
    let driver = Driver::new(&env.graphql_url)?;
    let (tally, rss) = with_peak_rss(driver.all(clients, requests, "waitlist")).await;
    let mut report = Report::new(Scenario::Waitlist, tally);
    report.rss_mib = rss.filter(|_| env.in_process());
    let seated = env.number(SEATED).await?;
    anyhow::ensure!(
        seated == capacity as i64,
        "{seated} seats held, capacity {capacity}"
    );
    let queued = env.pairs(WAITING_IN_ORDER).await?;
    anyhow::ensure!(queued.len() == crowd - capacity, "{} waiting", queued.len());

    // Churn: seat holders cancel while newcomers queue, all at once.
    let token_of: HashMap<Uuid, &env::Participant> =
        people.iter().map(|who| (who.id, who)).collect();
    let leaving = env
        .pairs(&format!(
            "SELECT id, user_id FROM registrations WHERE status IN ('PENDING', 'CONFIRMED') LIMIT {churn}"
        ))
        .await?;
    let newcomers = env.participants(churn).await?;
    let mut requests: Vec<Request> = leaving
        .iter()
        .map(|(registration, user)| {
            let who = token_of.get(user).map(|who| token(who)).unwrap_or_default();
            Request::new(CANCEL, json!({ "id": registration }), who)
        })
        .chain(newcomers.iter().map(|who| queue(who, competition)))
        .collect();
    requests.sort_by_cached_key(|_| Uuid::new_v4());
    let churned = driver.all(clients, requests, "churn").await;
    let seated_after = env.number(SEATED).await?;
    let waiting_after = env.pairs(WAITING_IN_ORDER).await?;
    let promoted_in_order = {
        let expected: Vec<Uuid> = queued[churn..].iter().map(|(id, _)| *id).collect();
        let kept: Vec<Uuid> = waiting_after
            .iter()
            .take(expected.len())
            .map(|(id, _)| *id)
            .collect();
        let promoted = env
            .number(&format!(
                "SELECT count(*) AS n FROM registrations WHERE status IN ('PENDING', 'CONFIRMED')
                  AND id IN ({})",
                queued[..churn]
                    .iter()
                    .map(|(id, _)| format!("'{id}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .await?;
        kept == expected && promoted == churn as i64
    };
    let gap_free = env
        .number(
            "SELECT (count(*) = coalesce(max(place), 0))::int::bigint AS n FROM (
                SELECT row_number() OVER (ORDER BY waitlist_seq) AS place
                  FROM registrations WHERE status = 'WAITLISTED') ranked",
        )
        .await?
        == 1;
    let counters = env
        .number(
            "SELECT (registered_count = (SELECT count(*) FROM registrations WHERE status IN ('PENDING', 'CONFIRMED'))
                 AND waitlist_count = (SELECT count(*) FROM registrations WHERE status = 'WAITLISTED'))::int::bigint AS n
               FROM competitions",
        )
        .await?
        == 1;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    for (name, value) in [
        ("clients", json!(clients)),
        ("seated", json!(seated_after)),
        ("waiting", json!(waiting_after.len())),
        ("promoted_in_order", json!(promoted_in_order)),
        ("positions_gap_free", json!(gap_free)),
        ("counters_exact", json!(counters)),
        ("churn_requests", json!(churned.requests())),
        ("churn_errors", json!(churned.errors)),
        ("churn_rps", json!(round(churned.throughput()))),
        ("churn_p50_ms", json!(round(churned.percentile(0.5)))),
        ("churn_p99_ms", json!(round(churned.percentile(0.99)))),
    ] {
        report.extra.insert(name.into(), value);
    }
    report.oversold = Some(env.oversold().await?);
    env.finish().await?;
    anyhow::ensure!(
        seated_after == capacity as i64,
        "{seated_after} seats held after churn"
    );
    anyhow::ensure!(
        promoted_in_order && gap_free && counters,
        "waiting list out of order: {:?}",
        report.extra
    );
    Ok(report)
}

/// Records when each seat count was reached, from inside the registering statement (a
/// trigger of the scratch database only): the instant a change commits, to the millisecond.
const SEAT_LOG: [&str; 3] = [
    "CREATE TABLE seat_log (n integer NOT NULL, at timestamptz NOT NULL)",
    "CREATE FUNCTION log_seat() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN INSERT INTO seat_log VALUES (NEW.registered_count, clock_timestamp()); RETURN NEW; END $$",
    "CREATE TRIGGER log_seat AFTER UPDATE OF registered_count ON competitions
     FOR EACH ROW EXECUTE FUNCTION log_seat()",
];

async fn subscribers(args: &Args, target: &Target) -> anyhow::Result<Report> {
    anyhow::ensure!(
        target.url.is_none(),
        "subscribers runs its own servers (no --url)"
    );
    let clients = 256;
    let capacity = scaled(1000.0, args.scale);
    let watchers = args.watchers.unwrap_or_else(|| scaled(5000.0, args.scale));
    let env = Env::start(target, args.server_workers).await?;
    let binary = match &args.server_bin {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?.with_file_name("mini-compete"),
    };
    // Thousands of anonymous sockets from one address.
    let watched = env
        .spawn_server(&binary, &[("MAX_CONNECTIONS_PER_USER", "1000000000")])
        .await?;
    let [unwatched, competition] = env.competitions(2, i32::try_from(capacity)?).await?[..] else {
        anyhow::bail!("two competitions were asked for");
    };
    let participants = scaled(2000.0, args.scale);
    let people = env.participants(2 * participants).await?;
    let (first_half, people) = people.split_at(participants);
    // The same load without watchers first, on the same servers: the cost of watching.
    let driver = Driver::new(&env.graphql_url)?;
    let alone = driver
        .all(
            clients,
            first_half
                .iter()
                .map(|who| register(who, unwatched))
                .collect(),
            "hot without subscribers",
        )
        .await;
    env.execute(&SEAT_LOG).await?;
    let ws_url = watched.graphql_url.replacen("http://", "ws://", 1) + "/ws";
    let mut seen = Vec::with_capacity(watchers);
    let mut listening = Vec::with_capacity(watchers);
    for chunk in (0..watchers).collect::<Vec<_>>().chunks(250) {
        let opened = futures_util::future::join_all(chunk.iter().map(|_| {
            let log = live::Seen::default();
            let url = ws_url.clone();
            async move {
                let task = live::subscribe(&url, competition, capacity as i64, log.clone()).await;
                (log, task)
            }
        }))
        .await;
        for (log, task) in opened {
            seen.push(log);
            listening.push(task?);
        }
    }
    let started = tokio::time::Instant::now();
    let requests = people
        .iter()
        .map(|who| register(who, competition))
        .collect();
    let tally = driver
        .all(clients, requests, "hot beside subscribers")
        .await;
    // Let the last state reach everyone.
    let _ = tokio::time::timeout(live::SETTLE, futures_util::future::join_all(listening)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let committed: Vec<(i64, f64)> = {
        #[derive(diesel::QueryableByName)]
        struct Seat {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
            #[diesel(sql_type = diesel::sql_types::Double)]
            at: f64,
        }
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "SELECT n::bigint AS n, extract(epoch FROM at)::float8 AS at FROM seat_log",
        )
        .load::<Seat>(&mut env.connection().await?)
        .await?
        .into_iter()
        .map(|seat| (seat.n, seat.at))
        .collect()
    };
    let committed_at: std::collections::HashMap<i64, f64> = committed.into_iter().collect();
    let mut latencies = Vec::new();
    let mut messages = 0usize;
    let mut complete = 0usize;
    for log in &seen {
        let log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        messages += log.len();
        if log
            .last()
            .is_some_and(|(count, _)| *count >= capacity as i64)
        {
            complete += 1;
        }
        // The first event is the state at subscription time, not a change.
        for (count, received) in log.iter().skip(1) {
            if let Some(at) = committed_at.get(count) {
                latencies.push((received - at) * 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(
                ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1)) - 1,
            )
            .copied()
            .unwrap_or(0.0)
    };
    let mut report = Report::new(Scenario::Subscribers, tally);
    report.rss_mib = watched.peak_rss_mib();
    let round = |x: f64| (x * 100.0).round() / 100.0;
    for (name, value) in [
        ("subscribers", json!(watchers)),
        ("hot_alone_rps", json!(round(alone.throughput()))),
        ("saw_the_final_state", json!(complete)),
        ("messages", json!(messages)),
        ("messages_per_s", json!(round(messages as f64 / elapsed))),
        ("delivery_p50_ms", json!(round(quantile(0.5)))),
        ("delivery_p99_ms", json!(round(quantile(0.99)))),
        (
            "delivery_max_ms",
            json!(round(latencies.last().copied().unwrap_or(0.0))),
        ),
    ] {
        report.extra.insert(name.into(), value);
    }
    report.oversold = Some(env.oversold().await?);
    watched.stop().await?;
    env.finish().await?;
    Ok(report)
}

/// `count` new participants, each registering once, round-robin over 200 competitions.
async fn spread_registrations(env: &Env, count: usize) -> anyhow::Result<Vec<Request>> {
    let competitions = env.competitions(200, 1_000_000).await?;
    let people = env.participants(count).await?;
    Ok(people
        .iter()
        .enumerate()
        .map(|(i, who)| register(who, competitions[i % competitions.len()]))
        .collect())
}

/// Steady registrations with the server's own workers (commit → CONFIRMED), then the
/// confirmation rate of one and of two worker pools alone over a queued backlog.
async fn jobs_latency(args: &Args, target: &Target) -> anyhow::Result<Report> {
    let env = Env::start(target, args.server_workers.max(1)).await?;
    let count = scaled(100.0 * args.duration_secs as f64, args.scale);
    let requests = spread_registrations(&env, count).await?;
    let driver = Driver::new(&env.graphql_url)?;
    let (tally, rss) = with_peak_rss(driver.at_rate(100.0, requests, "steady registrations")).await;
    wait_for(&env, CONFIRMED, tally.ok as i64).await?;
    let mut report = Report::new(Scenario::Jobs, tally);
    report.rss_mib = rss.filter(|_| env.in_process());
    report.extra.extend(confirmation_lag(&env).await?);
    env.finish().await?;

    let backlog = scaled(5000.0, args.scale);
    for pools in [1, 2] {
        let rate = drain_rate(args, target, backlog, pools).await?;
        report.extra.insert(
            format!("confirmations_per_s_{pools}_worker"),
            json!(rate.round()),
        );
    }
    report.extra.insert("backlog".into(), json!(backlog));
    Ok(report)
}

/// Commit → CONFIRMED, p50 and p99, over every confirmed registration.
async fn confirmation_lag(env: &Env) -> anyhow::Result<Map<String, Value>> {
    let mut lag = Map::new();
    for (name, quantile) in [("confirm_p50_ms", 0.5), ("confirm_p99_ms", 0.99)] {
        let micros = env
            .number(&format!(
                "SELECT (percentile_cont({quantile}) WITHIN GROUP (ORDER BY
                    extract(epoch FROM confirmed_at - created_at)) * 1000000)::bigint AS n
                   FROM registrations WHERE status = 'CONFIRMED'"
            ))
            .await?;
        lag.insert(name.into(), json!(micros as f64 / 1000.0));
    }
    Ok(lag)
}

/// Queues `backlog` registrations with no worker running, then starts `pools` worker pools
/// (each its own connection pool and LISTEN connection, as separate processes would have)
/// and measures confirmations per second between the first and the last confirmation.
async fn drain_rate(
    args: &Args,
    target: &Target,
    backlog: usize,
    pools: usize,
) -> anyhow::Result<f64> {
    let env = Env::start(target, 0).await?;
    let requests = spread_registrations(&env, backlog).await?;
    let driver = Driver::new(&env.graphql_url)?;
    let queued = driver.all(64, requests, "queueing").await;
    let stop = CancellationToken::new();
    let settings = JobsConfig {
        worker_concurrency: args.server_workers.max(1),
        job_drain_secs: 5,
        ..JobsConfig::default()
    };
    let running: Vec<_> = (0..pools)
        .map(|_| {
            tokio::spawn(jobs::run_workers(
                db::pool(&env.database_url, 16),
                env.database_url.clone(),
                settings.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_for(&env, CONFIRMED, queued.ok as i64).await?;
    stop.cancel();
    for pool in running {
        pool.await??;
    }
    let span_us = env
        .number(
            "SELECT (extract(epoch FROM max(confirmed_at) - min(confirmed_at)) * 1000000)::bigint AS n
               FROM registrations",
        )
        .await?;
    env.finish().await?;
    eprintln!(
        "  {pools} worker pool(s): {} confirmed in {} ms",
        queued.ok,
        span_us / 1000
    );
    Ok((queued.ok.saturating_sub(1)) as f64 / (span_us.max(1) as f64 / 1e6))
}

async fn wait_for(env: &Env, sql: &str, expected: i64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let seen = env.number(sql).await?;
        if seen >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {seen} of {expected} confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn print_table(reports: &[Report], to_stderr: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<12} {:>8} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>7}\n",
        "scenario",
        "requests",
        "ok",
        "refused",
        "errors",
        "rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "oversold",
        "ceiling",
        "ratio",
        "RSS MiB"
    ));
    let dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    for report in reports {
        let t = &report.tally;
        out.push_str(&format!(
            "{:<12} {:>8} {:>7} {:>7} {:>6} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>9} {:>6} {:>7}\n",
            report.name(),
            t.requests(),
            t.ok,
            t.refused,
            t.errors,
            t.throughput(),
            t.percentile(0.5),
            t.percentile(0.95),
            t.percentile(0.99),
            dash(report.oversold.map(|n| n.to_string())),
            dash(report.ceiling_tps.map(|c| format!("{c:.0}"))),
            dash(report.ratio().map(|r| format!("{r:.2}"))),
            dash(report.rss_mib.map(|m| format!("{m:.0}"))),
        ));
    }
    for report in reports {
        if !report.extra.is_empty() {
            out.push_str(&format!(
                "{}: {}\n",
                report.name(),
                Value::Object(report.extra.clone())
            ));
        }
        if let Some(error) = &report.tally.first_error {
            out.push_str(&format!("{}: first error: {error}\n", report.name()));
        }
    }
    if to_stderr {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
}
