//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`, which keeps
//! every input that once crashed a target) as an ordinary test, so that no
//! crash comes back. Longer runs use cargo-fuzz: see docs/RELIABILITY.md.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in confab_faces::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("fuzz target {name} panics on {}", path.display());
            }
            inputs += 1;
        }
        assert!(inputs > 0, "the corpus of {name} is empty");
    }
}
