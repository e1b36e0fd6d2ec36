//! Smoke test of the load generator: every scenario, tiny, against a real in-process server
//! and Postgres. It checks that the tool works and reports sane figures, not how fast.

use serde_json::Value;

#[test]
fn every_scenario_runs_tiny_and_reports_its_figures() {
    // The server binary the subscribers scenario starts: `cargo test` builds it beside
    // this one (the workspace's default members are both packages).
    let loadgen = std::path::Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let server = loadgen.with_file_name("mini-compete");
    assert!(
        server.exists(),
        "{} is missing: run `cargo test` from the workspace root",
        server.display()
    );
    let output = std::process::Command::new(loadgen)
        .env("LOADGEN_SERVER_BIN", &server)
        .args([
            "--scale",
            "0.01",
            "--duration-secs",
            "1",
            "--ceiling-secs",
            "1",
            "--json",
        ])
        .output()
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed:\n{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["scenario"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "hot",
            "spread",
            "reads",
            "login-flood",
            "jobs",
            "hostile",
            "waitlist",
            "subscribers",
            "read-one",
            "my-registrations",
            "organizer-view"
        ],
        "{stderr}"
    );
    for line in &lines {
        assert_eq!(line["errors"], 0, "{line}");
        assert!(line["ok"].as_u64() > Some(0), "{line}");
        for field in ["requests", "throughput_rps", "p50_ms", "p95_ms", "p99_ms"] {
            assert!(line[field].is_number(), "{field} missing: {line}");
        }
        for field in ["oversold", "ceiling_tps", "ratio"] {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
    }
    for registering in &lines[..2] {
        assert_eq!(registering["oversold"], 0, "{registering}");
        for ceiling in ["ceiling_tps", "schema_ceiling_tps"] {
            assert!(
                registering[ceiling].as_f64() > Some(0.0),
                "{ceiling}: {registering}"
            );
        }
    }
    // Hot: capacity 10 for 20 participants; exactly the seats were sold.
    assert_eq!(lines[0]["ok"], 10, "{}", lines[0]);
    assert_eq!(lines[0]["refused"], 10, "{}", lines[0]);
    assert!(lines[4]["confirm_p99_ms"].is_number(), "{}", lines[4]);
    // Subscribers: every watcher saw the competition fill, and the latency was measured.
    let live = &lines[7];
    assert_eq!(live["saw_the_final_state"], live["subscribers"], "{live}");
    for field in ["delivery_p99_ms", "messages_per_s", "hot_alone_rps"] {
        assert!(live[field].as_f64() > Some(0.0), "{field}: {live}");
    }
    // read-one: measured beside its own pgbench ceiling.
    for read in &lines[8..] {
        assert!(read["ceiling_tps"].as_f64() > Some(0.0), "{read}");
    }
}
