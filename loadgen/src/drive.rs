//! Sends GraphQL requests with a fixed number of concurrent clients (or at a fixed rate) and
//! tallies outcomes and latencies.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// One GraphQL request: the JSON body and the caller's token.
#[derive(Clone)]
pub struct Request {
    pub body: String,
    pub token: Option<Arc<str>>,
}

impl Request {
    pub fn new(query: &str, variables: Value, token: Option<Arc<str>>) -> Self {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        Self { body, token }
    }

    /// A body sent as it is, JSON or not.
    pub fn raw(body: String) -> Self {
        Self { body, token: None }
    }
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

#[derive(Clone)]
pub struct Driver {
    http: reqwest::Client,
    url: Arc<str>,
}

impl Driver {
    pub fn new(url: &str, clients: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            url: url.into(),
        })
    }

    /// Ok, an expected refusal (`Err(None)`), or an error worth reporting.
    pub async fn send(&self, request: &Request) -> Result<(), Option<String>> {
        let mut builder = self
            .http
            .post(&*self.url)
            .header("content-type", "application/json")
            .body(request.body.clone());
        if let Some(token) = &request.token {
            builder = builder.bearer_auth(token);
        }
        let response = builder.send().await.map_err(|e| Some(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Some(e.to_string()))?;
        if !status.is_success() {
            return Err(Some(format!("HTTP {status}")));
        }
        // Parsing every answer would spend the machine's CPU on the client side: a body
        // without an "errors" key is a success.
        if !bytes.windows(8).any(|window| window == b"\"errors\"") {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| Some(e.to_string()))?;
        match body["errors"][0]["extensions"]["code"].as_str() {
            None if body.get("errors").is_none() => Ok(()),
            Some(code) if EXPECTED_REFUSALS.contains(&code) => Err(None),
            _ => Err(Some(body["errors"].to_string())),
        }
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
                    let mut tally = Tally::default();
                    while let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let sent = Instant::now();
                        let outcome = driver.send(request).await;
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
                    let mut tally = Tally::default();
                    let mut n = client;
                    while Instant::now() < deadline {
                        let request = make(n);
                        let sent = Instant::now();
                        let outcome = driver.send(&request).await;
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

    /// Every request once, started at a steady `per_second` (open loop).
    pub async fn at_rate(&self, per_second: f64, requests: Vec<Request>, label: &str) -> Tally {
        let progress = Progress::start(label, Some(requests.len()));
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = Vec::with_capacity(requests.len());
        for request in requests {
            ticks.tick().await;
            let (driver, done) = (self.clone(), progress.done.clone());
            sent.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let at = Instant::now();
                let outcome = driver.send(&request).await;
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
