//! Sends GraphQL requests with a fixed number of concurrent clients (or at a fixed rate) and
//! tallies outcomes and latencies.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method,
    client::conn::http1::{self, SendRequest},
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// One GraphQL request: the JSON body and the caller's token. Cheap to clone, so a
/// scenario builds its requests once and the clients send copies (as wrk would).
#[derive(Clone)]
pub struct Request {
    body: Bytes,
    token: Option<Arc<str>>,
}

impl Request {
    pub fn new(query: &str, variables: Value, token: Option<Arc<str>>) -> Self {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        Self {
            body: body.into(),
            token,
        }
    }

    /// A body sent as it is, JSON or not.
    pub fn raw(body: String) -> Self {
        Self {
            body: body.into(),
            token: None,
        }
    }
}

/// `requests` (at least one) over and over, the `n`th send getting the `n`th (modulo
/// their number).
pub fn cycle(requests: Vec<Request>) -> impl Fn(usize) -> Request + Send + Sync + 'static {
    assert!(!requests.is_empty(), "a scenario without requests");
    move |n| requests[n % requests.len()].clone()
}

/// Codes a correct server answers under load by design: a full competition, a repeat.
const EXPECTED_REFUSALS: [&str; 2] = ["COMPETITION_FULL", "ALREADY_REGISTERED"];

#[derive(Default)]
pub struct Tally {
    pub latencies_ms: Vec<f64>,
    pub ok: usize,
    /// Refused with an expected code (e.g. no seat left).
    pub refused: usize,
    /// Transport failures, non-200s and unexpected error codes.
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Tally {
    pub fn requests(&self) -> usize {
        self.ok + self.refused + self.errors
    }

    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile latency (nearest rank), in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn absorb(&mut self, other: Tally) {
        self.latencies_ms.extend(other.latencies_ms);
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, started: Instant, outcome: Result<(), Option<String>>) {
        self.latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            Ok(()) => self.ok += 1,
            Err(None) => self.refused += 1,
            Err(Some(error)) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }
}

/// Where the requests go. The load tool shares the machine with the server, so its
/// client is plain hyper over one keep-alive connection per client: no pool to check
/// out of, no URL parsed per request (reqwest took about twice its CPU per request).
#[derive(Clone)]
pub struct Driver {
    target: Arc<Target>,
}

struct Target {
    /// `host:port`, to connect to.
    address: String,
    host: HeaderValue,
    path: String,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Driver {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)?;
        anyhow::ensure!(
            url.scheme() == "http",
            "only http:// URLs are supported: {url}"
        );
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("no host in {url}"))?;
        let address = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
        Ok(Self {
            target: Arc::new(Target {
                host: HeaderValue::from_str(&address)?,
                address,
                path: url.path().to_owned(),
            }),
        })
    }

    /// A client of its own: one connection, opened on first use and again whenever the
    /// server closed it.
    pub fn client(&self) -> Client {
        Client {
            target: self.target.clone(),
            connection: None,
        }
    }

    /// One request on a connection of its own.
    pub async fn send(&self, request: &Request) -> Result<(), Option<String>> {
        self.client().send(request).await
    }

    /// Every request once, by `clients` concurrent clients.
    pub async fn all(&self, clients: usize, requests: Vec<Request>, label: &str) -> Tally {
        let total = requests.len();
        let requests = Arc::new(requests);
        let next = Arc::new(AtomicUsize::new(0));
        let progress = Progress::start(label, Some(total));
        let started = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (driver, requests, next, done) = (
                    self.clone(),
                    requests.clone(),
                    next.clone(),
                    progress.done.clone(),
                );
                tokio::spawn(async move {
                    let (mut tally, mut client) = (Tally::default(), driver.client());
                    while let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let sent = Instant::now();
                        let outcome = client.send(request).await;
                        tally.record(sent, outcome);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    tally
                })
            })
            .collect();
        self.gather(workers, started, progress).await
    }

    /// Requests made by `make` for `duration`, by `clients` concurrent clients.
    pub async fn during(
        &self,
        clients: usize,
        duration: Duration,
        make: impl Fn(usize) -> Request + Send + Sync + 'static,
        label: &str,
    ) -> Tally {
        let make = Arc::new(make);
        let progress = Progress::start(label, None);
        let started = Instant::now();
        let deadline = started + duration;
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let (driver, make, done) = (self.clone(), make.clone(), progress.done.clone());
                tokio::spawn(async move {
                    let (mut tally, mut connection) = (Tally::default(), driver.client());
                    let mut n = client;
                    while Instant::now() < deadline {
                        let request = make(n);
                        let sent = Instant::now();
                        let outcome = connection.send(&request).await;
                        tally.record(sent, outcome);
                        done.fetch_add(1, Ordering::Relaxed);
                        n += clients;
                    }
                    tally
                })
            })
            .collect();
        self.gather(workers, started, progress).await
    }

    /// Every request once, started at a steady `per_second` (open loop). A request takes
    /// an idle client (its connection) if there is one.
    pub async fn at_rate(&self, per_second: f64, requests: Vec<Request>, label: &str) -> Tally {
        let idle = Arc::new(std::sync::Mutex::new(Vec::<Client>::new()));
        let progress = Progress::start(label, Some(requests.len()));
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = Vec::with_capacity(requests.len());
        for request in requests {
            ticks.tick().await;
            let (driver, idle, done) = (self.clone(), idle.clone(), progress.done.clone());
            sent.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let idle_client = idle.lock().map(|mut idle| idle.pop()).unwrap_or_default();
                let mut client = idle_client.unwrap_or_else(|| driver.client());
                let at = Instant::now();
                let outcome = client.send(&request).await;
                if let Ok(mut idle) = idle.lock() {
                    idle.push(client);
                }
                tally.record(at, outcome);
                done.fetch_add(1, Ordering::Relaxed);
                tally
            }));
        }
        self.gather(sent, started, progress).await
    }

    async fn gather(
        &self,
        workers: Vec<tokio::task::JoinHandle<Tally>>,
        started: Instant,
        progress: Progress,
    ) -> Tally {
        let mut tally = Tally::default();
        for worker in workers {
            match worker.await {
                Ok(part) => tally.absorb(part),
                Err(error) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(error.to_string());
                }
            }
        }
        tally.elapsed = started.elapsed();
        progress.stop();
        tally
    }
}

/// One client: its requests go one after another over its own connection.
pub struct Client {
    target: Arc<Target>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// Ok, an expected refusal (`Err(None)`), or an error worth reporting.
    pub async fn send(&mut self, request: &Request) -> Result<(), Option<String>> {
        let (status, bytes) = tokio::time::timeout(TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| Some(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|error| {
                // Whatever state the connection is in, the next request opens a new one.
                self.connection = None;
                Some(error.to_string())
            })?;
        if !status.is_success() {
            return Err(Some(format!("HTTP {status}")));
        }
        // Parsing every answer would spend the machine's CPU on the client side: a body
        // without an "errors" key is a success.
        if memchr::memmem::find(&bytes, b"\"errors\"").is_none() {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| Some(e.to_string()))?;
        match body["errors"][0]["extensions"]["code"].as_str() {
            None if body.get("errors").is_none() => Ok(()),
            Some(code) if EXPECTED_REFUSALS.contains(&code) => Err(None),
            _ => Err(Some(body["errors"].to_string())),
        }
    }

    async fn exchange(&mut self, request: &Request) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
        let connection = match &mut self.connection {
            Some(connection) if !connection.is_closed() => connection,
            _ => self.connection.insert(self.connect().await?),
        };
        connection.ready().await?;
        let mut builder = hyper::Request::builder()
            .method(Method::POST)
            .uri(&self.target.path)
            .header(header::HOST, self.target.host.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &request.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = connection
            .send_request(builder.body(Full::new(request.body.clone()))?)
            .await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(&self.target.address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Ends when the server closes the connection or the sender is dropped; its error
        // (if any) reaches the next request through the sender.
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// Prints `label: done/total, rate` to stderr every second.
struct Progress {
    done: Arc<AtomicUsize>,
    printer: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(label: &str, total: Option<usize>) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let (counter, label) = (done.clone(), label.to_owned());
        let printer = tokio::spawn(async move {
            let started = Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let done = counter.load(Ordering::Relaxed);
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let total = total.map_or(String::new(), |total| format!("/{total}"));
                eprintln!("  {label}: {done}{total} requests, {rate:.0}/s");
            }
        });
        Self { done, printer }
    }

    fn stop(self) {
        self.printer.abort();
    }
}
