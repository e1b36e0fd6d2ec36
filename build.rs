//! Fetches the published GraphiQL, React and ReactDOM builds that the server serves, so
//! that GraphiQL works without reaching any other host (offline, behind a strict proxy).
//!
//! Nothing third-party is committed: `npm pack` downloads each pinned package from the npm
//! registry into `OUT_DIR` once, its SHA-512 is checked against the integrity pinned here,
//! and the few files the page needs (with the packages' licences) are extracted beside it.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha512};

/// (package, version, npm's `dist.integrity`, files to extract from its `package/`).
const PACKAGES: [(&str, &str, &str, &[&str]); 3] = [
    (
        "graphiql",
        "4.1.2",
        "sha512-rNlzQIAzm6i2KBXmVQWBgLvt0TloxFVB2d18bukvdsvjEuFDHsKx5IVOomL1W1o5WW+tE54+ioHb2AEKzO2cUg==",
        &["graphiql.min.js", "graphiql.min.css", "LICENSE"],
    ),
    (
        "react",
        "18.3.1",
        "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        &["umd/react.production.min.js", "LICENSE"],
    ),
    (
        "react-dom",
        "18.3.1",
        "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        &["umd/react-dom.production.min.js", "LICENSE"],
    ),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = out.join("graphiql");
    fs::create_dir_all(&assets).expect("OUT_DIR is writable");
    for (name, version, integrity, files) in PACKAGES {
        let tarball = assets.join(format!("{name}-{version}.tgz"));
        if !verified(&tarball, integrity) {
            pack(name, version, &assets);
            assert!(
                verified(&tarball, integrity),
                "{name}@{version} from the npm registry does not match its pinned integrity"
            );
        }
        let target = assets.join(name);
        fs::create_dir_all(&target).expect("OUT_DIR is writable");
        let members: Vec<String> = files.iter().map(|file| format!("package/{file}")).collect();
        let extracted = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&target)
            .args(&members)
            .status()
            .expect("tar runs");
        assert!(
            extracted.success(),
            "cannot extract {members:?} from {name}"
        );
    }
}

fn verified(tarball: &Path, integrity: &str) -> bool {
    let Ok(bytes) = fs::read(tarball) else {
        return false;
    };
    format!("sha512-{}", STANDARD.encode(Sha512::digest(&bytes))) == integrity
}

fn pack(name: &str, version: &str, into: &Path) {
    let packed = Command::new("npm")
        .args([
            "pack",
            "--silent",
            &format!("{name}@{version}"),
            "--pack-destination",
        ])
        .arg(into)
        .status();
    match packed {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm pack {name}@{version}` failed ({status}): GraphiQL needs the npm registry once"
        ),
        Err(error) => panic!("cannot run npm ({error}): GraphiQL's assets are fetched with it"),
    }
}
