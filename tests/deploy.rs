//! The deployment files, checked without a Docker engine: `docker-compose.yml` against the
//! Compose specification's schema and our rules (`tests/compose/check.py`).

use std::{path::Path, process::Command};

/// (passed, what the checker said)
fn check(compose_file: &Path) -> (bool, String) {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compose-spec");
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose/check.py"))
        .arg(compose_file)
        .arg(cache)
        .output()
        .expect("python3 runs (with pyyaml and jsonschema; .ci/run installs them)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

fn compose_file() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
        .expect("docker-compose.yml")
}

#[test]
fn compose_file_is_valid_and_safe() {
    let (passed, said) = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"));
    assert!(passed, "{said}");
}

#[test]
fn the_checker_refuses_what_it_should() {
    let original = compose_file();
    let broken = [
        (
            "a published Postgres",
            original.replacen(
                "    image: postgres:16\n",
                "    image: postgres:16\n    ports: [\"5432:5432\"]\n",
                1,
            ),
            "postgres publishes ports",
        ),
        (
            "a default JWT secret",
            original.replacen(
                "${JWT_SECRET:?set JWT_SECRET",
                "${JWT_SECRET:-change-me-in-production}${IGNORED:-set JWT_SECRET",
                1,
            ),
            "JWT_SECRET must be required",
        ),
        (
            "a key Compose does not know",
            original.replacen("    restart: unless-stopped\n", "    restrat: always\n", 1),
            "restrat",
        ),
    ];
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (what, text, expected) in broken {
        assert_ne!(text, original, "{what}: the edit did not apply");
        let path = dir.join(format!("compose-{}.yml", what.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        let (passed, said) = check(&path);
        assert!(!passed, "{what} passed");
        assert!(said.contains(expected), "{what}: {said}");
    }
}
