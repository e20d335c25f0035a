//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`), findings
//! included, through the same entry points the fuzz targets call: every
//! input a fuzzer ever kept, or that once crashed, runs on every test run.

use std::path::PathBuf;

#[test]
fn corpus_replays_without_panics() {
    // Where cargo runs the test from: the compile-time path goes stale when
    // a shared target dir reuses a binary built in another checkout (this
    // crate rarely changes, so cargo does not rebuild it).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest_dir.join("../../fuzz/corpus");
    for (name, target) in itm_imap::fuzz_targets::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            target(&data);
            n += 1;
        }
        assert!(n > 0, "the corpus of {name} is empty");
    }
}
