//! The Debian package (SPEC section 9): built by `scripts/deb.sh` from the
//! binary these tests were built with, then installed on this machine,
//! started as the service user with the installed config the way the unit
//! starts it, logged in to, stopped, removed and purged by
//! `scripts/package-test.sh` (which says what it checks). Needs root, as CI
//! has.

mod support;

use std::process::Command;

use support::{repo_root, show};

#[test]
fn the_deb_installs_serves_and_purges_cleanly() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_imap-time-machine"));
    // CARGO_TARGET_DIR/debug/imap-time-machine
    let target = bin
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir of the test binary");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let built = Command::new(repo_root().join("scripts/deb.sh"))
        .args(["--no-build", "--profile", "dev", "--output"])
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run scripts/deb.sh");
    assert!(built.status.success(), "deb.sh: {}", show(&built.stderr));
    let deb = show(&built.stdout)
        .lines()
        .last()
        .expect("path of the .deb")
        .to_string();
    assert!(deb.ends_with(".deb"), "{deb}");
    let tested = Command::new(repo_root().join("scripts/package-test.sh"))
        .arg(&deb)
        .output()
        .expect("run scripts/package-test.sh");
    assert!(
        tested.status.success(),
        "package-test.sh:\n{}\n{}",
        show(&tested.stdout),
        show(&tested.stderr)
    );
    assert!(show(&tested.stdout).contains("PASS:"), "{}", show(&tested.stdout));
}
